// The JSON control channel the staging transports share (shared memory and CUDA IPC): one
// JSON object per length-prefixed socket frame, each carrying its refit id.
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

#include "qarl/refit/socket.h"

namespace qarl::refit {

void send_control(Socket& s, const nlohmann::json& j);
// A JSON object with a "type"; anything else is a runtime Error.
nlohmann::json recv_control(Socket& s);
// Unique per process and call (pid, clock, counter): frames of an earlier refit are skipped.
uint64_t new_refit_id();
double refit_now_s();  // steady clock, seconds

}  // namespace qarl::refit
