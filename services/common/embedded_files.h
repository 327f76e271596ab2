// Files embedded into the binary at build time (tools/build/embed_files.cmake): the web UI's
// HTML, CSS and ES modules from ui/, and Chart.js and d3 from Debian's libjs-chart.js and
// libjs-d3 with their licences.
#pragma once

#include <cstddef>
#include <vector>

namespace mlops {

struct EmbeddedFile {
  const char* path;  // the URL path it is served at, e.g. "/assets/app.js"
  const char* data;
  size_t size;
  const char* etag;  // the first 16 hex digits of the file's SHA-256
};

// Every embedded file, in the order the build listed them.
const std::vector<EmbeddedFile>& EmbeddedFiles();

}  // namespace mlops
