// CRC32C (Castagnoli), the per-batch checksum of the packed refit stream. Hardware (SSE4.2)
// when the CPU has it, else a table-driven software version; both give identical results.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qarl::refit {

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
uint32_t crc32c_software(const void* data, size_t n, uint32_t crc = 0);
bool crc32c_has_hardware();

// ---- The parallel form (the device checksum, crc32c_device.h) --------------------------
// The CRC register without the initial and final inversion: crc32c(d, n, c) ==
// ~crc32c_raw(~c, d, n). It is linear, so a buffer split into pieces combines as
// raw(s, A || B) == shift(raw(s, A), |B|) ^ raw(0, B), shift(s, L) == raw(s, L zero bytes).
uint32_t crc32c_raw(uint32_t state, const void* data, size_t n);
// shift(s, L) for the L the table was built for: 4 lookups (tables: t[k][b] = shift(b << 8k)).
struct Crc32cShift {
  size_t length = 0;
  uint32_t t[4][256];
  explicit Crc32cShift(size_t length);
  uint32_t operator()(uint32_t s) const {
    return t[0][s & 0xff] ^ t[1][(s >> 8) & 0xff] ^ t[2][(s >> 16) & 0xff] ^ t[3][s >> 24];
  }
};
// Appends `count` pieces to `state`: piece i is `piece` bytes long except the last, which
// holds the rest of `total` bytes; raws[i] = crc32c_raw(0, piece i). `shift` is for `piece`.
uint32_t crc32c_raw_combine(uint32_t state, const uint32_t* raws, size_t count,
                            const Crc32cShift& shift, size_t total);
// The 8 x 256 slicing tables (for the device kernel).
const uint32_t* crc32c_slice8_tables();

}  // namespace qarl::refit
