#include "cguestatomics.h"
