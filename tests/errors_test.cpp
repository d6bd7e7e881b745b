// Tests for leash/errors.hpp: exception types, messages, the failure handler.
#include <doctest/doctest.h>

#include <leash.hpp>
#include <stdexcept>
#include <string>

TEST_CASE("every leash exception is a leash::error and a std::runtime_error") {
  leash::cancel_info info;
  info.reason = leash::stop_reason::deadline_exceeded;
  info.origin = leash::stop_reason::deadline_exceeded;
  const leash::deadline_exceeded d(info);
  const leash::cancelled& c = d;
  const leash::error& e = c;
  const std::runtime_error& r = e;
  CHECK(std::string(r.what()).rfind("leash::deadline_exceeded: deadline exceeded", 0) == 0);
  const leash::usage_error u("leash::nursery: misuse");
  CHECK(dynamic_cast<const leash::error*>(&u) != nullptr);
}

TEST_CASE("what() says reason, origin, scope, message, task and cause in one line") {
  leash::cancel_info info;
  info.reason = leash::stop_reason::parent;
  info.origin = leash::stop_reason::cancelled;
  info.message = "a sibling task failed";
  info.scope_name = "fanout";
  info.task_name = "fetch";
  info.task_site = leash::source_location::current("fanout.cpp", 42, "f");
  info.cause = std::make_exception_ptr(std::runtime_error("connection refused"));
  const std::string what = leash::cancelled(info).what();
  CHECK(what ==
        "leash::cancelled: cancelled by an enclosing scope (cancelled) in nursery \"fanout\": a "
        "sibling task failed; triggered by task \"fetch\" spawned at fanout.cpp:42; cause: "
        "connection refused");
  CHECK(what.find('\n') == std::string::npos);
}

TEST_CASE("set_unobserved_failure_handler returns the previous handler, empty restores default") {
  int calls = 0;
  auto previous =
      leash::set_unobserved_failure_handler([&](const leash::unobserved_failure&) { ++calls; });
  CHECK(static_cast<bool>(previous));
  {
    leash::nursery n({.cancel_on_failure = false});
    n.spawn([] { throw std::runtime_error("x"); });
  }
  CHECK(calls == 1);
  auto mine = leash::set_unobserved_failure_handler(nullptr);
  CHECK(static_cast<bool>(mine));
  leash::set_unobserved_failure_handler(previous);
}

TEST_CASE("to_string names every stop reason") {
  CHECK(std::string(leash::to_string(leash::stop_reason::none)) == "not stopped");
  CHECK(std::string(leash::to_string(leash::stop_reason::cancelled)) == "cancelled");
  CHECK(std::string(leash::to_string(leash::stop_reason::deadline_exceeded)) ==
        "deadline exceeded");
  CHECK(std::string(leash::to_string(leash::stop_reason::parent)) ==
        "cancelled by an enclosing scope");
}
