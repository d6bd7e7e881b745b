// docs_prelude.hpp: what every code block of the docs may take for granted.
// tests/tools/doc_snippets.cpp includes it first in the file it generates from
// a page. The blocks are compiled, never linked: the placeholders below (the
// application code a block calls, such as fetch()) are declared only.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <leash.hpp>
#include <leash/http.hpp>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

// Placeholders for the application around a block.
// Each stands for the application code around a block; the docs call them
// and never show them.
std::string query(std::string_view backend);  // a backend call; may hang
std::string fetch(std::string_view what);
std::string fetch_until(std::string_view what, std::stop_token stop);
void slow();
int compute();
void crawl(const std::string& url);
void use(const std::string& a, const std::string& b);
void run_the_code_under_test();
struct backend_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void fail(const std::string& report);
std::vector<std::string> read_lines();
void process(const std::string& line);
struct job {};
void run(const job& j);
void report_idle();
void poll();
struct connection;
extern connection conn;
void read_loop(connection& c);
void write_loop(connection& c);

struct user {
  std::string name;
  bool banned = false;
};
struct database;
extern database db;  // an open connection
template <class Row>
leash::cursor<Row> query(database& db, std::string_view sql);
bool match(const user& u);
bool authorized(const leash::http::server_request& req);
void store(const char* data, std::size_t size);
// A body_source over a file, for streaming uploads.
class file_source final : public leash::body_source {
 public:
  explicit file_source(const std::string& path);
  std::size_t read(std::span<std::byte> out, std::stop_token stop) override;
  void close(bool at_end) override;
};
void on_head(const leash::http::response_head& head);
void on_body(std::span<const char> bytes);
void copy_body(leash::body& from, leash::http::response_writer& to);  // read, write, repeat
