// CRC32C (Castagnoli), the per-batch checksum of the packed refit stream. Hardware (SSE4.2)
// when the CPU has it, else a table-driven software version; both give identical results.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qarl::refit {

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
uint32_t crc32c_software(const void* data, size_t n, uint32_t crc = 0);
bool crc32c_has_hardware();

}  // namespace qarl::refit
