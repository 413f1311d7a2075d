// Logging: spdlog underneath, one process-wide logger configured at start.
// Any thread may log.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "shoal/status.h"

namespace shoal {

// Accepts trace, debug, info, warn, error, off.
Status set_log_level(std::string_view level);
// Prefixes every line with the node's short id once it is known.
void set_log_node_name(std::string_view name);
// Command-line tools: log lines go to stderr, so stdout carries only results.
void log_to_stderr();

}  // namespace shoal

#define SHOAL_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define SHOAL_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define SHOAL_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define SHOAL_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
