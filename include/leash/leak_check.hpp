// SPDX-License-Identifier: BSL-1.0
// leash/leak_check.hpp: goleak for leash.
// Prevents: leaks found only by comparing runtime.NumGoroutine() before and
// after, or never.
//
//   leash::leak_check guard;             // baseline: what is alive now
//   run_the_code_under_test();
//   std::string report = guard.verify(); // waits up to 1 s; "" when clean
//   // else: 2x task "fetch" spawned at fanout.cpp:42, blocked in task::get for 1.2s
//
// It sees tasks, tickers, must-close handles opened while it lives, plain
// threads that blocked in a channel call or select while it lives, and
// pending timer entries (deadlines of scopes and nurseries still alive):
//
//   leash::leak_check: 1 task still running, 1 handle still open
//     1x task "fetch" spawned at fanout.cpp:42, blocked in task::get for 1.2s
//     1x must_close<leash::body> opened at client.cpp:17, open for 1.2s
//
// The baseline is a set of ids, not a count, so one leak cannot hide behind
// another object ending. Idle runtime threads are not leaks (runtime::stats()
// reports them).
//
// Guarantees. Blocks: verify() only, on a condition variable woken by every
// task, ticker, handle and timer entry that ends, for at most the grace
// period. Thread-safe: any number of checks may live at once, on any threads.
#pragma once

#include "detail/config.hpp"

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

#include "detail/leak_signal.hpp"
#include "detail/registry.hpp"
#include "detail/timer.hpp"
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
  // Tasks and tickers with one of these names, and handles of one of these
  // resource types, are never reported.
  std::vector<std::string> ignore_names{};
  // Tasks, tickers and handles started or opened at a site ending with one of
  // these ("file.cpp" or "file.cpp:42") are never reported.
  std::vector<std::string> ignore_sites{};
  // Pending timer entries are reported (a scope or nursery with a deadline
  // still alive); false ignores them.
  bool report_timers = true;
};

class leak_check {
 public:
  // Records the ids of everything alive now: the baseline. Must-close handles
  // are recorded from now on (opened earlier, they are not known).
  [[nodiscard]] explicit leak_check(leak_check_options options = {})
      : options_(std::move(options)) {
    detail::leak_signal::instance().check_started();
    const snapshot now = take();
    for (const auto& t : now.tasks)
      baseline_.insert(t.id);
    for (const auto& o : now.objects)
      baseline_.insert(o.id);
    for (const auto& t : now.timers)
      timer_baseline_.insert(t.id);
  }
  ~leak_check() { detail::leak_signal::instance().check_ended(); }

  leak_check(const leak_check&) = delete;
  leak_check& operator=(const leak_check&) = delete;

  // Waits up to the grace period until nothing outside the baseline is alive,
  // then returns a report grouped by source line; empty when clean.
  std::string verify() const { return verify(options_.grace); }
  std::string verify(std::chrono::milliseconds grace) const {
    const auto deadline = std::chrono::steady_clock::now() + grace;
    auto& signal = detail::leak_signal::instance();
    for (;;) {
      // Generation first: an end after the snapshot changes it, so the wait
      // below cannot sleep through it.
      const std::uint64_t seen = signal.generation();
      snapshot leaked = leaks(take());
      if (leaked.empty() || std::chrono::steady_clock::now() >= deadline) return report(leaked);
      signal.wait_changed(seen, deadline);
    }
  }

 private:
  struct snapshot {
    std::vector<live_task> tasks;
    std::vector<detail::object_snapshot> objects;
    std::vector<detail::timer_handle> timers;
    bool empty() const { return tasks.empty() && objects.empty() && timers.empty(); }
  };

  static snapshot take() {
    return {live_tasks(), detail::object_registry::instance().snapshot(),
            detail::timer_service::instance().snapshot()};
  }

  snapshot leaks(snapshot all) const {
    snapshot out;
    for (auto& t : all.tasks) {
      if (baseline_.count(t.id) == 0 && !ignored(t.name, t.site)) out.tasks.push_back(std::move(t));
    }
    for (auto& o : all.objects) {
      if (baseline_.count(o.id) == 0 && !ignored(o.name, o.site)) {
        out.objects.push_back(std::move(o));
      }
    }
    if (options_.report_timers) {
      for (const auto& t : all.timers) {
        if (timer_baseline_.count(t.id) == 0) out.timers.push_back(t);
      }
    }
    return out;
  }

  bool ignored(const std::string& name, const source_location& where) const {
    if (std::find(options_.ignore_names.begin(), options_.ignore_names.end(), name) !=
        options_.ignore_names.end()) {
      return true;
    }
    const std::string site = to_string(where);
    const std::string file = where.file;
    auto ends_with = [](const std::string& s, const std::string& suffix) {
      return s.size() >= suffix.size() &&
             s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return std::any_of(
        options_.ignore_sites.begin(), options_.ignore_sites.end(),
        [&](const std::string& p) { return ends_with(site, p) || ends_with(file, p); });
  }

  static std::string count_of(std::size_t n, const char* one, const char* many, const char* what) {
    return std::to_string(n) + " " + (n == 1 ? one : many) + " " + what;
  }

  static std::string report(const snapshot& leaked) {
    if (leaked.empty()) return {};
    // Group by what a reader needs to find the leak: kind, name, site, blocking call.
    std::map<std::tuple<std::string, std::string, std::string>, std::pair<std::size_t, std::string>>
        groups;
    std::map<std::tuple<std::string, std::string, std::string>, std::chrono::steady_clock::duration>
        longest;
    auto add = [&](std::tuple<std::string, std::string, std::string> key,
                   std::chrono::steady_clock::duration d, const std::string& line) {
      auto [it, fresh] = groups.try_emplace(key, 0, line);
      ++it->second.first;
      auto& l = longest[key];
      if (fresh || d > l) {
        l = d;
        it->second.second = line;
      }
    };
    const auto now = std::chrono::steady_clock::now();
    std::size_t tickers = 0;
    std::size_t handles = 0;
    std::size_t threads = 0;
    for (const auto& t : leaked.tasks) {
      add({to_string(t.site), "task " + t.name, t.blocked_in ? t.blocked_in : ""}, t.blocked_for,
          detail::describe_task(t));
    }
    for (const auto& o : leaked.objects) {
      std::string line;
      if (o.kind == detail::object_snapshot::ticker) {
        ++tickers;
        line = "ticker";
        if (!o.name.empty()) line += " \"" + o.name + "\"";
        line += " started at " + to_string(o.site) + ", running for ";
      } else if (o.kind == detail::object_snapshot::handle) {
        ++handles;
        line = "must_close<" + o.name + "> opened at " + to_string(o.site) + ", open for ";
      } else {
        ++threads;
        line = "thread (not a leash task) blocked in " + o.name + " for ";
      }
      line += detail::describe_duration(now - o.since);
      add({to_string(o.site), std::to_string(o.kind) + o.name, ""}, now - o.since, line);
    }
    for (const auto& t : leaked.timers) {
      const auto left = t.when > now ? t.when - now : std::chrono::steady_clock::duration{};
      add({"", "timer", ""}, left,
          "pending timer due in " + detail::describe_duration(left) +
              " (a cancel_scope or nursery deadline still alive)");
    }
    std::vector<std::string> parts;
    if (!leaked.tasks.empty()) {
      parts.push_back(count_of(leaked.tasks.size(), "task", "tasks", "still running"));
    }
    if (tickers != 0) parts.push_back(count_of(tickers, "ticker", "tickers", "still running"));
    if (handles != 0) parts.push_back(count_of(handles, "handle", "handles", "still open"));
    if (threads != 0) parts.push_back(count_of(threads, "thread", "threads", "still blocked"));
    if (!leaked.timers.empty()) {
      parts.push_back(count_of(leaked.timers.size(), "timer", "timers", "still pending"));
    }
    std::string out = "leash::leak_check: ";
    for (std::size_t i = 0; i < parts.size(); ++i)
      out += (i == 0 ? "" : ", ") + parts[i];
    out += "\n";
    for (const auto& [key, group] : groups) {
      out += "  " + std::to_string(group.first) + "x " + group.second + "\n";
    }
    return out;
  }

  leak_check_options options_;
  std::set<std::uint64_t> baseline_;        // task, ticker and handle ids alive at construction
  std::set<std::uint64_t> timer_baseline_;  // timer entry ids (their own id space)
};

}  // namespace leash::inline v0
