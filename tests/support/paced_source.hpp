// tests/support/paced_source.hpp: a request body produced piece by piece,
// optionally paced against its reader, and the progress counter that paces it.
// A server or proxy that buffered a whole body before passing it on would
// never let such a stream finish: the writer waits for the reader.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <functional>
#include <leash/body.hpp>
#include <mutex>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>

namespace http_test {

// A count of bytes that one thread adds to and another waits on.
class progress {
 public:
  void add(std::size_t n) {
    std::lock_guard lock(mutex_);
    total_ += n;
    cv_.notify_all();
  }
  std::size_t total() {
    std::lock_guard lock(mutex_);
    return total_;
  }
  // Waits until at least `n`; throws after `limit` (a generous bound, not a
  // way to order events).
  void wait_for(std::size_t n, std::chrono::seconds limit = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, limit, [&] { return total_ >= n; })) {
      throw std::runtime_error("progress: the reader never got " + std::to_string(n) + " bytes");
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t total_ = 0;
};

// The bytes of piece k: all 'a' + k % 26.
inline char piece_byte(std::size_t k) {
  return static_cast<char>('a' + k % 26);
}

// What a paced_source(pieces, size) produces in total.
inline std::string paced_content(std::size_t pieces, std::size_t size) {
  std::string out;
  for (std::size_t k = 0; k < pieces; ++k)
    out.append(size, piece_byte(k));
  return out;
}

// `pieces` pieces of `size` bytes; before it starts piece k (k >= 1) it calls
// before(k), which may block until the reader caught up.
class paced_source final : public leash::body_source {
 public:
  paced_source(std::size_t pieces, std::size_t size, std::function<void(std::size_t)> before = {})
      : pieces_(pieces), size_(size), before_(std::move(before)) {}

  std::size_t read(std::span<std::byte> out, std::stop_token) override {
    if (piece_ == pieces_) return 0;
    if (offset_ == 0 && piece_ > 0 && before_) before_(piece_);
    const std::size_t n = std::min(out.size(), size_ - offset_);
    std::memset(out.data(), piece_byte(piece_), n);
    offset_ += n;
    if (offset_ == size_) {
      offset_ = 0;
      ++piece_;
    }
    return n;
  }
  void close(bool) override {}

 private:
  std::size_t pieces_;
  std::size_t size_;
  std::function<void(std::size_t)> before_;
  std::size_t piece_ = 0;
  std::size_t offset_ = 0;
};

}  // namespace http_test
