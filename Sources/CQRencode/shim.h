// Debian's libqrencode-dev (pkg-config: libqrencode), exposed to Swift as the module CQRencode.
#include <qrencode.h>
