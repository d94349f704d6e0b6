// hiredis, used only for its RESP reply reader and command formatter: SwiftNIO moves the bytes, so no hiredis call
// ever blocks on a socket.
#include <hiredis/hiredis.h>
