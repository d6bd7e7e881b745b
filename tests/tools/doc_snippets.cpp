// doc_snippets: turns the ```cpp blocks of one Markdown page into one C++
// file, so the test suite compiles every code block the docs show.
//
//   doc_snippets PAGE.md OUTPUT.cpp
//
// The output includes tests/docs_prelude.hpp (all of leash, leash/http.hpp,
// the common standard headers, `using namespace std::chrono_literals;` and
// declarations of the placeholder functions the docs call, such as
// `fetch()`), then every block in page order, each under a #line directive
// naming the page, so a compile error points at the Markdown line.
//
// A block is marked by an HTML comment on the line right before its fence:
//
//   (no marker)                          a fragment, unless it has an #include
//                                        line or defines main(): then a file
//   <!-- snippet: fragment -->           statements: becomes the body of a
//                                        function of its own (its return type
//                                        is deduced, so `return x;` works)
//   <!-- snippet: file -->               declarations at namespace scope, in a
//                                        namespace of its own (#include lines
//                                        are hoisted to the top of the output);
//                                        a file that defines main() stays at
//                                        global scope (one such block a page)
//   <!-- snippet: prelude -->            declarations at global scope, seen by
//                                        every later block of the page
//   <!-- snippet: not compiled: REASON -->  skipped; a reason is required
//
// In fragments, unused variables are not errors (a fragment often ends where
// a value is obtained). Any other marker, a `not compiled` without a reason,
// or an unterminated fence is an error. Standard library only, as
// amalgamate.cpp (a CMake-script extractor mangles unbalanced brackets).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

enum class kind { fragment, file, prelude, skipped };

struct block {
  kind what = kind::fragment;
  std::size_t first_line = 0;  // 1-based line of the block's first code line
  std::vector<std::string> lines;
};

constexpr std::string_view marker_open = "<!-- snippet:";
constexpr std::string_view marker_close = "-->";
constexpr std::string_view not_compiled = "not compiled:";

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The kind a marker line names; throws on an unknown or incomplete marker.
kind parse_marker(const std::string& line, const std::string& where) {
  const std::string t = trim(line);
  if (t.size() < marker_open.size() + marker_close.size() ||
      t.compare(t.size() - marker_close.size(), marker_close.size(), marker_close) != 0)
    throw std::runtime_error(where + ": a snippet marker must be one line: " + t);
  const std::string word = trim(std::string_view(t).substr(
      marker_open.size(), t.size() - marker_open.size() - marker_close.size()));
  if (word == "fragment") return kind::fragment;
  if (word == "file") return kind::file;
  if (word == "prelude") return kind::prelude;
  if (starts_with(word, not_compiled)) {
    if (trim(std::string_view(word).substr(not_compiled.size())).empty())
      throw std::runtime_error(where + ": `not compiled:` needs a reason");
    return kind::skipped;
  }
  throw std::runtime_error(where + ": unknown snippet marker: " + t);
}

bool defines_main(const block& b) {
  for (const auto& l : b.lines)
    if (l.find("int main(") != std::string::npos) return true;
  return false;
}

bool looks_like_file(const block& b) {
  for (const auto& l : b.lines)
    if (starts_with(trim(l), "#include")) return true;
  return defines_main(b);
}

std::vector<block> extract(const fs::path& page) {
  std::ifstream in(page);
  if (!in) throw std::runtime_error("cannot read " + page.string());
  std::vector<block> blocks;
  std::string line, previous;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (trim(line) != "```cpp") {
      previous = line;
      continue;
    }
    const std::string where = page.string() + ":" + std::to_string(number);
    block b;
    const bool marked = starts_with(trim(previous), marker_open);
    if (marked) b.what = parse_marker(previous, where);
    b.first_line = number + 1;
    bool closed = false;
    while (std::getline(in, line)) {
      ++number;
      if (trim(line) == "```") {
        closed = true;
        break;
      }
      b.lines.push_back(line);
    }
    if (!closed) throw std::runtime_error(where + ": ```cpp block never closed");
    if (!marked && looks_like_file(b)) b.what = kind::file;
    blocks.push_back(std::move(b));
    previous.clear();
  }
  return blocks;
}

struct writer {
  std::string page;  // as named in #line
  std::ostringstream out;
  bool has_main = false;

  void line_directive(std::size_t n) { out << "#line " << n << " \"" << page << "\"\n"; }

  void hoisted_includes(const std::vector<block>& blocks) {
    for (const auto& b : blocks) {
      if (b.what == kind::skipped) continue;
      for (std::size_t i = 0; i < b.lines.size(); ++i)
        if (starts_with(trim(b.lines[i]), "#include")) {
          line_directive(b.first_line + i);
          out << b.lines[i] << '\n';
        }
    }
  }

  // The block's lines, #include lines blanked (they were hoisted).
  void body(const block& b) {
    line_directive(b.first_line);
    for (const auto& l : b.lines)
      out << (starts_with(trim(l), "#include") ? "" : l) << '\n';
  }

  void emit(const block& b, std::size_t index) {
    const std::string name = "doc_block_" + std::to_string(index);
    switch (b.what) {
      case kind::skipped:
        return;
      case kind::prelude:
        body(b);
        return;
      case kind::file:
        if (defines_main(b)) {  // the program's own main: at global scope
          if (has_main) throw std::runtime_error(page + ": two blocks define main()");
          has_main = true;
          body(b);
          return;
        }
        out << "namespace " << name << " {\n";
        body(b);
        out << "}  // namespace " << name << "\n";
        return;
      case kind::fragment:
        out << "#pragma GCC diagnostic push\n"
               "#pragma GCC diagnostic ignored \"-Wunused-variable\"\n"
               "#pragma GCC diagnostic ignored \"-Wunused-but-set-variable\"\n"
            << "namespace " << name << " {\n[[maybe_unused]] auto doc_fragment() {\n";
        body(b);
        out << "}\n}  // namespace " << name << "\n#pragma GCC diagnostic pop\n";
        return;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: doc_snippets PAGE.md OUTPUT.cpp\n";
    return 2;
  }
  try {
    const fs::path page = argv[1];
    const std::vector<block> blocks = extract(page);
    writer w;
    w.page = page.generic_string();
    w.out << "// GENERATED by tests/tools/doc_snippets.cpp from " << w.page
          << ": edit the page, not this file.\n"
             "#include \"docs_prelude.hpp\"\n";
    w.hoisted_includes(blocks);
    std::size_t compiled = 0;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      w.emit(blocks[i], i + 1);
      if (blocks[i].what != kind::skipped) ++compiled;
    }
    const fs::path output = argv[2];
    if (output.has_parent_path()) fs::create_directories(output.parent_path());
    std::ofstream(output) << w.out.str();
    std::cout << "doc_snippets: " << page.generic_string() << ": " << compiled << " of "
              << blocks.size() << " cpp blocks compiled\n";
  } catch (const std::exception& e) {
    std::cerr << "doc_snippets: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
