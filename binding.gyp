{
  "targets": [
    {
      "target_name": "silkworm_native",
      "sources": ["native/addon.cc", "native/common.cc", "native/tap.cc", "native/udp.cc", "native/bytes.cc", "native/lock.cc", "native/steer.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
