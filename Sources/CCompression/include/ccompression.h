#ifndef CCOMPRESSION_H
#define CCOMPRESSION_H
#include <zlib.h>
#include <lzma.h>
#include "domus_xz.h"
#endif
