// Placeholder: replaced by the TAP / raw socket / UDP batch addon.
#include <napi.h>
static Napi::Object Init(Napi::Env env, Napi::Object exports) { return exports; }
NODE_API_MODULE(silkworm_native, Init)
