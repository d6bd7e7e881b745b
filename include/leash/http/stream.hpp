// SPDX-License-Identifier: BSL-1.0
// leash/http/stream.hpp: the bytes of one connection, as the server and the
// transport read and write them; the hook that brings TLS (or any other byte
// stream over a socket) without leash depending on a TLS library, and a
// connection with no socket at all (an in-memory pipe, memory.hpp).
//
// A stream does non-blocking steps; leash does every wait, deadline and
// cancel. A step that cannot go on says what it waits for (want::read: the
// socket must become readable; want::write: writable), and leash calls it
// again once the socket's fd is ready that way: with poll() for a thread
// caller, through the reactor for a coroutine task. One adapter serves both.
// This is the shape of OpenSSL's non-blocking API (SSL_ERROR_WANT_READ /
// WANT_WRITE; the handshake runs inside the first read or write) and of
// memory-BIO TLS engines.
//
//   server_options o;
//   o.wrap_connection = [&](int fd) { return std::make_unique<my_tls>(ctx, fd, server_side); };
//   transport_options t;
//   t.wrap_connection = [&](int fd, const std::string& host) {
//     return std::make_unique<my_tls>(ctx, fd, host);   // host: for SNI, verification
//   };
//
// Contract. Every member returns at once, never waiting for the peer.
// leash owns the fd: it closes it, shuts it down on a cancel, and polls it;
// the adapter owns only its own state. A write that returned a want (with a
// short count) is called again with the unsent rest of the same bytes before
// any other write, unless the connection is abandoned (a timeout, a cancel,
// an error). read and write may be called at the same time from two
// threads (a request body read while a ticker flushes the response): an
// engine that is not thread-safe (OpenSSL) takes a mutex of its own for a
// step, which never waits. Errors: throw (http::io_error for a broken
// stream); the connection is then closed without shutdown().
//
// A stream with no socket (transport_options::dial) also waits by itself:
// leash calls wait() or async_wait() where it would poll the fd. Both return
// once a step that asked for `w` may go on (a spurious return only costs a
// step); wait() returns false when `deadline` (on the calling task's clock:
// virtual inside leash::virtual_time) passes first. A stop of the token
// (wait) or of the coroutine task's ambient scope (async_wait) throws
// leash::cancelled. A stream over a socket never has them called.
#pragma once

#include "../detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <span>
#include <stop_token>
#include <string_view>

#include "../coro.hpp"
#include "../errors.hpp"

namespace leash::inline v0::http {

// What a non-blocking step needs before it can go on.
enum class want : unsigned char {
  nothing,  // nothing: the step is done (a read with no bytes: end of stream)
  read,     // call again once the socket is readable
  write,    // call again once the socket is writable
};

// The result of one step: bytes read or taken, and what it waits for.
struct step {
  std::size_t bytes = 0;
  want wait = want::nothing;
};

// One connection's bytes (see the header comment).
class stream {
 public:
  virtual ~stream() = default;

  // Reads up to into.size() bytes. bytes > 0: that many were read (wait is
  // ignored). bytes == 0: `wait` says what it waits for; want::nothing is
  // the end of the stream. Never blocks; throws on a broken stream.
  virtual step read(std::span<char> into) = 0;
  // Takes up to data.size() bytes; a short count or none with `wait` set
  // says what the rest waits for. Never blocks; throws on a broken stream.
  virtual step write(std::string_view data) = 0;
  // Ends the write side in order (a TLS close_notify); call again while it
  // returns a want. leash then shuts down or closes the fd. Called once per
  // orderly end of a connection, never after a step threw. Never blocks.
  virtual want shutdown() = 0;
  // True while bytes already taken from the socket wait to be read (a TLS
  // record decrypted in part): leash reads again before it waits for the
  // socket to become readable, and a pooled connection with such bytes is
  // not reused.
  virtual bool has_buffered() const { return false; }

  // The waits of a stream with no socket (see the header comment). The
  // defaults throw usage_error: a stream over a socket is never asked.
  virtual bool wait(want w, std::chrono::steady_clock::time_point deadline,
                    const std::stop_token& token) {
    (void)w, (void)deadline, (void)token;
    throw_no_wait();
  }
  virtual coro<void> async_wait(want w) {
    (void)w;
    throw_no_wait();
  }

 private:
  [[noreturn]] static void throw_no_wait() {
    throw usage_error(
        "leash::http::stream: a stream with no socket (transport_options::dial) must "
        "override wait() and async_wait()");
  }
};

}  // namespace leash::inline v0::http
