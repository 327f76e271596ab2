// libFuzzer target: the redactor of step logs (services/scheduler/secrets.h). The input is split
// into two values, a piece size and a text; the text fed in pieces must come out exactly as a
// leftmost-longest replacement over the whole text does, whatever the pieces, so that a value
// split across pieces is never let through.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "services/scheduler/secrets.h"

using mlops::scheduler::Redaction;
using mlops::scheduler::Redactor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const size_t first = data[0] % 9, second = data[1] % 9, piece = 1 + data[2] % 17;
  std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
  if (rest.size() < first + second) return 0;
  std::vector<Redaction> values = {{std::string(rest.substr(0, first)), "<1>"},
                                   {std::string(rest.substr(first, second)), "<22>"}};
  std::string_view text = rest.substr(first + second);
  std::string expected;
  for (size_t at = 0; at < text.size();) {
    const Redaction* match = nullptr;
    for (const Redaction& r : values) {
      if (!r.value.empty() && text.compare(at, r.value.size(), r.value) == 0 &&
          (match == nullptr || r.value.size() > match->value.size())) {
        match = &r;
      }
    }
    if (match != nullptr) {
      expected += match->replacement;
      at += match->value.size();
    } else {
      expected += text[at++];
    }
  }
  Redactor redactor(values);
  std::string out;
  for (size_t at = 0; at < text.size(); at += piece) out += redactor.Feed(text.substr(at, piece));
  out += redactor.Finish();
  if (out != expected) std::abort();
  return 0;
}
