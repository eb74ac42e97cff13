#include "gpede/version.hpp"

namespace gpede {

const char* version() noexcept { return GPEDE_VERSION_STRING; }

}  // namespace gpede
