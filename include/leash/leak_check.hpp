// leash/leak_check.hpp: goleak for leash.
// Prevents: leaks found only by comparing runtime.NumGoroutine() before and
// after, or never.
//
//   leash::leak_check guard;             // baseline: what is alive now
//   run_the_code_under_test();
//   std::string report = guard.verify(); // waits up to 1 s; "" when clean
//   // else: 2x task "fetch" spawned at fanout.cpp:42, blocked in task::get for 1.2s
//
// The baseline is a set of ids, not a count, so one leak cannot hide behind
// another object ending. Idle runtime threads are not leaks (runtime::stats()
// reports them).
//
// Guarantees. Blocks: verify() only, on a condition variable woken by every
// task end, for at most the grace period. Thread-safe: any number of checks
// may live at once, on any threads.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "detail/registry.hpp"
#include "errors.hpp"

namespace leash::inline v0 {

// One running task, as listed by live_tasks().
struct live_task {
  std::uint64_t id = 0;
  std::string name;
  source_location site;  // where it was spawned
  std::uint64_t nursery_id = 0;
  std::string nursery;  // the nursery's name
  source_location nursery_site;
  std::size_t depth = 0;             // 0: its nursery is not inside another task
  const char* blocked_in = nullptr;  // the leash call it blocks in, or nullptr
  std::chrono::steady_clock::duration blocked_for{};
  std::chrono::steady_clock::duration age{};
};

namespace detail {

inline std::string describe_duration(std::chrono::steady_clock::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  char buf[32];
  if (s < 1.0) {
    std::snprintf(buf, sizeof buf, "%.0fms", s * 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  }
  return buf;
}

inline std::string describe_task(const live_task& t) {
  std::string s = "task";
  if (!t.name.empty()) s += " \"" + t.name + "\"";
  s += " spawned at " + to_string(t.site);
  if (t.blocked_in != nullptr) {
    s += std::string(", blocked in ") + t.blocked_in + " for " + describe_duration(t.blocked_for);
  } else {
    s += ", running for " + describe_duration(t.age);
  }
  return s;
}

// Flattens nursery snapshots into tasks in tree order: each task is followed
// by the tasks of nurseries opened inside it.
inline std::vector<live_task> task_tree(const std::vector<nursery_snapshot>& nurseries) {
  std::map<std::uint64_t, std::vector<const nursery_snapshot*>> children;  // by parent task
  std::set<std::uint64_t> live_ids;
  for (const auto& n : nurseries) {
    for (const auto& t : n.tasks)
      live_ids.insert(t.id);
  }
  std::vector<const nursery_snapshot*> roots;
  for (const auto& n : nurseries) {
    if (live_ids.count(n.parent_task) != 0) {
      children[n.parent_task].push_back(&n);
    } else {
      roots.push_back(&n);
    }
  }
  std::vector<live_task> out;
  auto visit = [&](auto& self, const nursery_snapshot& n, std::size_t depth) -> void {
    for (const auto& t : n.tasks) {
      out.push_back(
          {t.id, t.name, t.site, n.id, n.name, n.site, depth, t.blocked_in, t.blocked_for, t.age});
      for (const nursery_snapshot* c : children[t.id])
        self(self, *c, depth + 1);
    }
  };
  // Oldest nursery first: the registry lists the newest first.
  for (auto it = roots.rbegin(); it != roots.rend(); ++it)
    visit(visit, **it, 0);
  return out;
}

}  // namespace detail

// Every running task of every nursery, in tree order (see live_task::depth).
inline std::vector<live_task> live_tasks() {
  return detail::task_tree(detail::registry::instance().snapshot());
}

// Renders live_tasks() as an indented tree, one line per nursery and task.
inline std::string to_string(const std::vector<live_task>& tasks) {
  std::string out;
  std::uint64_t nursery = 0;
  for (const auto& t : tasks) {
    const std::string indent(4 * t.depth, ' ');
    if (t.nursery_id != nursery) {
      nursery = t.nursery_id;
      out += indent + "nursery";
      if (!t.nursery.empty()) out += " \"" + t.nursery + "\"";
      out += " opened at " + to_string(t.nursery_site) + "\n";
    }
    out += indent + "  " + detail::describe_task(t) + "\n";
  }
  return out;
}

struct leak_check_options {
  // How long verify() waits for new tasks to end before it reports them.
  std::chrono::milliseconds grace{1000};
  // Tasks with one of these names are never reported.
  std::vector<std::string> ignore_names{};
  // Tasks spawned at a site ending with one of these ("file.cpp" or
  // "file.cpp:42") are never reported.
  std::vector<std::string> ignore_sites{};
};

class leak_check {
 public:
  // Records the ids of everything alive now: the baseline.
  [[nodiscard]] explicit leak_check(leak_check_options options = {})
      : options_(std::move(options)) {
    detail::registry::instance().check_started();
    for (const auto& t : live_tasks())
      baseline_.insert(t.id);
  }
  ~leak_check() { detail::registry::instance().check_ended(); }

  leak_check(const leak_check&) = delete;
  leak_check& operator=(const leak_check&) = delete;

  // Waits up to the grace period until nothing outside the baseline is alive,
  // then returns a report grouped by source line; empty when clean.
  std::string verify() const { return verify(options_.grace); }
  std::string verify(std::chrono::milliseconds grace) const {
    const auto deadline = std::chrono::steady_clock::now() + grace;
    const auto snap = detail::registry::instance().wait_until(
        deadline, [&](const auto& s) { return leaks(detail::task_tree(s)).empty(); });
    return report(leaks(detail::task_tree(snap)));
  }

 private:
  std::vector<live_task> leaks(const std::vector<live_task>& tasks) const {
    std::vector<live_task> out;
    for (const auto& t : tasks) {
      if (baseline_.count(t.id) == 0 && !ignored(t)) out.push_back(t);
    }
    return out;
  }

  bool ignored(const live_task& t) const {
    if (std::find(options_.ignore_names.begin(), options_.ignore_names.end(), t.name) !=
        options_.ignore_names.end()) {
      return true;
    }
    const std::string site = to_string(t.site);
    const std::string file = t.site.file;
    auto ends_with = [](const std::string& s, const std::string& suffix) {
      return s.size() >= suffix.size() &&
             s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return std::any_of(
        options_.ignore_sites.begin(), options_.ignore_sites.end(),
        [&](const std::string& p) { return ends_with(site, p) || ends_with(file, p); });
  }

  static std::string report(const std::vector<live_task>& leaked) {
    if (leaked.empty()) return {};
    // Group by what a reader needs to find the leak: name, site, blocking call.
    std::map<std::tuple<std::string, std::string, std::string>, std::pair<std::size_t, live_task>>
        groups;
    for (const auto& t : leaked) {
      auto key = std::make_tuple(to_string(t.site), t.name, t.blocked_in ? t.blocked_in : "");
      auto [it, fresh] = groups.try_emplace(key, 0, t);
      ++it->second.first;
      if (!fresh && t.blocked_for > it->second.second.blocked_for) it->second.second = t;
    }
    std::string out = "leash::leak_check: " + std::to_string(leaked.size()) +
                      (leaked.size() == 1 ? " task" : " tasks") + " still running\n";
    for (const auto& [key, group] : groups) {
      out += "  " + std::to_string(group.first) + "x " + detail::describe_task(group.second) + "\n";
    }
    return out;
  }

  leak_check_options options_;
  std::set<std::uint64_t> baseline_;  // ids alive at construction
};

}  // namespace leash::inline v0
