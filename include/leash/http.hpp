// SPDX-License-Identifier: BSL-1.0
// leash/http.hpp: the HTTP worked example, all of it (Linux: epoll, eventfd).
//
// Not included by leash.hpp, which stays portable. Plain http:// HTTP/1.1:
// HTTP/2, proxies, redirects, cookies and gzip are out of scope; TLS comes
// from the application, as an http::stream (stream.hpp).
#pragma once

#include "detail/config.hpp"

#include "http/client.hpp"
#include "http/errors.hpp"
#include "http/memory.hpp"
#include "http/message.hpp"
#include "http/request_writer.hpp"
#include "http/response_parser.hpp"
#include "http/response_writer.hpp"
#include "http/reverse_proxy.hpp"
#include "http/server.hpp"
#include "http/stream.hpp"
#include "http/transport.hpp"
#include "http/values.hpp"
