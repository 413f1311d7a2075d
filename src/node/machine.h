// What this machine has, and parsing of the quantities operators type.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "shoal/status.h"

namespace shoal::node {

// CPUs this process may run on (sched_getaffinity), at least 1.
uint32_t detect_cpus();
// Physical memory, or the cgroup v2 memory.max when lower.
uint64_t detect_memory_bytes();
// NVIDIA GPUs visible as /dev/nvidia<N>.
uint32_t detect_gpus();

// "1073741824", "512MiB", "4G", "1.5GiB" (K/M/G/T are powers of 1024).
Result<uint64_t> parse_bytes(const std::string& text);
// "NAME=QTY" with a non-negative finite quantity.
Result<std::pair<std::string, double>> parse_resource(const std::string& text);
// "KEY=VALUE" labels.
Result<std::pair<std::string, std::string>> parse_label(const std::string& text);
// "host:port" or "[v6]:port"; a bare host gets `default_port`.
Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text,
                                                          uint16_t default_port);

// A host name or address as a numeric IP string (IPv4 preferred); blocking,
// for startup only.
Result<std::string> resolve_numeric(const std::string& host);

}  // namespace shoal::node
