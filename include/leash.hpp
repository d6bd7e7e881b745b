// SPDX-License-Identifier: BSL-1.0
// leash.hpp: structured concurrency and resource RAII for C++20.
//
// Includes every portable component of leash. The HTTP worked example
// (Linux only) is included separately from leash/http/.
#pragma once

#include "leash/detail/config.hpp"

#include "leash/body.hpp"
#include "leash/broadcast.hpp"
#include "leash/cancel.hpp"
#include "leash/channel.hpp"
#include "leash/context_value.hpp"
#include "leash/coro.hpp"
#include "leash/cursor.hpp"
#include "leash/errors.hpp"
#include "leash/event.hpp"
#include "leash/leak_check.hpp"
#include "leash/must_close.hpp"
#include "leash/nursery.hpp"
#include "leash/observer.hpp"
#include "leash/oneshot.hpp"
#include "leash/policies.hpp"
#include "leash/runtime.hpp"
#include "leash/select.hpp"
#include "leash/semaphore.hpp"
#include "leash/shutdown.hpp"
#include "leash/ticker.hpp"
#include "leash/timer_channel.hpp"
#include "leash/version.hpp"
#include "leash/virtual_time.hpp"
#include "leash/watch.hpp"
