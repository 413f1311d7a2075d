#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

namespace shoal {

Status set_log_level(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (parsed == spdlog::level::off && level != "off") {
    return Status::invalid_argument("unknown log level '" + std::string(level) +
                                    "' (expected trace, debug, info, warn, error or off)");
  }
  spdlog::set_level(parsed);
  return {};
}

void set_log_node_name(std::string_view name) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ [" + std::string(name) + "] %v");
}

void log_to_stderr() {
  auto logger = spdlog::get("shoal-stderr");
  if (!logger) logger = spdlog::stderr_color_mt("shoal-stderr");
  spdlog::set_default_logger(logger);
}

}  // namespace shoal
