// The test runner: doctest's main plus a leak check around every test case.
//
// Each test case starts with a check that nothing is still running (so a leak
// from an earlier case is never blamed on this one) and ends with
// leash::leak_check::verify(). A leak fails the process even when every
// assertion passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <leash/leak_check.hpp>
#include <optional>

namespace {

bool leaked = false;
std::optional<leash::leak_check> guard;

struct leak_listener : doctest::IReporter {
  explicit leak_listener(const doctest::ContextOptions&) {}

  void test_case_start(const doctest::TestCaseData& tc) override {
    const auto live = leash::live_tasks();
    if (!live.empty()) {
      std::fprintf(stderr, "leak before test case \"%s\" started:\n%s", tc.m_name,
                   leash::to_string(live).c_str());
      leaked = true;
    }
    name_ = tc.m_name;
    guard.emplace();
  }

  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    const std::string report = guard->verify();
    guard.reset();
    if (!report.empty()) {
      std::fprintf(stderr, "leak in test case \"%s\":\n%s", name_, report.c_str());
      leaked = true;
    }
  }

  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}

  const char* name_ = "";
};

}  // namespace

REGISTER_LISTENER("leash_leak_check", 1, leak_listener);

int main(int argc, char** argv) {
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  const int result = context.run();
  if (context.shouldExit()) return result;
  if (leaked) {
    std::fprintf(stderr, "leash: a test case leaked tasks (see above)\n");
    return result != 0 ? result : 1;
  }
  return result;
}
