// Printable, bounded message text (error.hpp).
#include "gpede/error.hpp"

#include <algorithm>

namespace gpede {
namespace {

/// Length of the UTF-8 sequence that starts at text[i], or 0 if none starts there.
std::size_t utf8_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  std::size_t n = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  // overlong forms, surrogates and code points above U+10FFFF
  const unsigned char c1 = byte(i + 1);
  if (c == 0xE0 && c1 < 0xA0) return 0;
  if (c == 0xED && c1 >= 0xA0) return 0;
  if (c == 0xF0 && c1 < 0x90) return 0;
  if (c == 0xF4 && c1 >= 0x90) return 0;
  return n;
}

std::string escape(std::string_view text, std::size_t max_bytes, bool keep_lines) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 16);
  std::size_t i = 0;
  while (i < text.size() && i < max_bytes) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (keep_lines && (c == '\n' || c == '\t')) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    const std::size_t n = c >= 0x80 ? utf8_length(text, i) : 0;
    if (n > 0 && i + n <= max_bytes) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    if (n > 0) break;  // a sequence cut by the bound
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 0xF];
    ++i;
  }
  if (i < text.size()) {
    out += "...[" + std::to_string(text.size() - i) + " more bytes]";
  }
  return out;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) { return escape(text, max_bytes, false); }

std::string bounded_message(std::string_view message, std::size_t max_bytes) {
  return escape(message, max_bytes, true);
}

}  // namespace gpede
