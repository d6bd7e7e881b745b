// amalgamate: writes leash's single drop-in header from the modular ones.
//
//   amalgamate INCLUDE_DIR OUTPUT
//
// Starts at INCLUDE_DIR/leash.hpp and inlines every quoted include once, in
// first-use order, resolved relative to the including file. System includes
// stay where they are (they guard themselves). Standard library only: a
// CMake-script generator mangles lines with unbalanced brackets.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct amalgamator {
  fs::path root;
  std::set<fs::path> done;
  std::ostringstream out;

  void inline_file(const fs::path& file) {
    const fs::path canonical = fs::weakly_canonical(file);
    if (!done.insert(canonical).second) return;
    std::ifstream in(canonical);
    if (!in) throw std::runtime_error("cannot read " + canonical.string());
    out << "// ---- " << fs::relative(canonical, root).generic_string() << " ----\n";
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("#pragma once", 0) == 0) continue;
      if (line.rfind("#include \"", 0) == 0) {
        const auto end = line.find('"', 10);
        if (end == std::string::npos) throw std::runtime_error("bad include: " + line);
        inline_file(canonical.parent_path() / line.substr(10, end - 10));
        continue;
      }
      out << line << '\n';
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: amalgamate INCLUDE_DIR OUTPUT\n";
    return 2;
  }
  try {
    amalgamator a;
    a.root = fs::weakly_canonical(argv[1]);
    a.out << "// leash.hpp: leash as one drop-in header (structured concurrency and\n"
             "// resource RAII for C++20). GENERATED from include/ by\n"
             "// tests/tools/amalgamate.cpp: edit the modular headers, then build the\n"
             "// `leash_single_header` target. Documentation: docs/ in the repository.\n"
             "// Generated from formatted sources: not reformatted as a whole.\n"
             "// clang-format off\n"
             "#pragma once\n";
    a.inline_file(a.root / "leash.hpp");
    const fs::path output = argv[2];
    fs::create_directories(output.parent_path());
    std::ofstream(output) << a.out.str();
  } catch (const std::exception& e) {
    std::cerr << "amalgamate: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
