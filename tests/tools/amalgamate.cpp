// SPDX-License-Identifier: BSL-1.0
// amalgamate: writes leash's single drop-in headers from the modular ones.
//
//   amalgamate INCLUDE_DIR LICENSE OUTPUT_DIR
//
// OUTPUT_DIR/leash.hpp starts at INCLUDE_DIR/leash.hpp; OUTPUT_DIR/leash_http.hpp
// starts at INCLUDE_DIR/leash/http.hpp, includes "leash.hpp" (the first file,
// kept beside it) and inlines only the HTTP headers and the io ones they use. Each quoted include
// is inlined once, in first-use order, resolved relative to the including file. System includes
// stay where they are (they guard themselves). Each output opens with the SPDX line and LICENSE as
// a comment; the modular headers' own SPDX lines are dropped. Standard library only: a CMake-script
// generator mangles lines with unbalanced brackets.
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fs = std::filesystem;

namespace {

const std::string spdx_line = "// SPDX-License-Identifier: BSL-1.0";
const std::string spdx_prefix = "// SPDX-License-Identifier:";
const std::string quoted_include = "#include \"";

std::string read_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The license text as a comment block: each line behind "// ", blank lines "//".
std::string commented(const std::string& text) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);)
    out += line.empty() ? "//\n" : "// " + line + "\n";
  return out;
}

struct amalgamator {
  fs::path root;
  // Headers already inlined here, or held by the single header this one includes.
  std::set<fs::path> done;
  // Which headers (paths relative to root) this file may inline; a header
  // outside it that is not in `done` is an error, not a silent copy.
  std::function<bool(const std::string&)> may_inline;
  std::ostringstream out;

  void inline_file(const fs::path& file) {
    const fs::path canonical = fs::weakly_canonical(file);
    if (done.contains(canonical)) return;
    const std::string relative = fs::relative(canonical, root).generic_string();
    if (!may_inline(relative))
      throw std::runtime_error(relative + " is not in the single header this one includes");
    done.insert(canonical);
    std::ifstream in(canonical);
    if (!in) throw std::runtime_error("cannot read " + canonical.string());
    emit("// ---- " + relative + " ----");
    std::string line;
    for (bool first = true; std::getline(in, line); first = false) {
      if (first && line.starts_with(spdx_prefix)) {
        if (line != spdx_line) throw std::runtime_error(relative + ": unexpected license " + line);
        continue;
      }
      if (line.starts_with("#pragma once")) continue;
      if (line.starts_with(quoted_include)) {
        inline_include(canonical, line);
        continue;
      }
      emit(line);
    }
  }

  // Writes a line, but never two blank lines in a row (dropping `#pragma once`
  // and inlined includes leaves them), so the result is what clang-format
  // would leave too.
  void emit(const std::string& line) {
    if (line.empty() && last_blank) return;
    last_blank = line.empty();
    out << line << '\n';
  }
  bool last_blank = false;

  void inline_include(const fs::path& from, const std::string& line) {
    const auto end = line.find('"', quoted_include.size());
    if (end == std::string::npos) throw std::runtime_error("bad include: " + line);
    const auto name = line.substr(quoted_include.size(), end - quoted_include.size());
    inline_file(from.parent_path() / name);
  }
};

// The opening of a generated header: SPDX line, what the file is, the license.
std::string preamble(const std::string& about, const std::string& license) {
  return spdx_line + "\n" + about +
         "// GENERATED from include/ by tests/tools/amalgamate.cpp: edit the modular\n"
         "// headers, then build the `leash_single_header` target. Documentation:\n"
         "// docs/ in the repository. Generated from formatted sources: not\n"
         "// reformatted as a whole.\n"
         "//\n" +
         license + "// clang-format off\n#pragma once\n";
}

void write_file(const fs::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

// The HTTP headers, and the event-driven sockets (Linux only, like the
// HTTP layer's client, which waits on them in coroutine tasks).
bool is_http_header(const std::string& relative) {
  return relative == "leash/http.hpp" || relative.starts_with("leash/http/") ||
         relative.starts_with("leash/io/");
}

void amalgamate(const fs::path& include_dir, const fs::path& license_file,
                const fs::path& out_dir) {
  const fs::path root = fs::weakly_canonical(include_dir);
  const std::string license = commented(read_file(license_file));
  fs::create_directories(out_dir);

  amalgamator core{root, {}, [](const std::string&) { return true; }, {}};
  core.inline_file(root / "leash.hpp");
  write_file(out_dir / "leash.hpp",
             preamble("// leash.hpp: leash as one drop-in header (structured concurrency and\n"
                      "// resource RAII for C++20).\n",
                      license) +
                 core.out.str());

  amalgamator http{root, core.done, is_http_header, {}};
  http.inline_file(root / "leash" / "http.hpp");
  write_file(out_dir / "leash_http.hpp",
             preamble("// leash_http.hpp: leash's HTTP worked example (POSIX sockets) as one\n"
                      "// drop-in header, layered on the single leash.hpp: keep both files in\n"
                      "// one folder and #include \"leash_http.hpp\".\n",
                      license) +
                 quoted_include + "leash.hpp\"\n" + http.out.str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: amalgamate INCLUDE_DIR LICENSE OUTPUT_DIR\n";
    return 2;
  }
  try {
    amalgamate(argv[1], argv[2], argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "amalgamate: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
