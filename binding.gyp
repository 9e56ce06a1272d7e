{
  "targets": [
    {
      "target_name": "reuseport",
      "sources": [
        "native/addon.cc",
        "native/exec.cc",
        "native/fd.cc",
        "native/listener.cc",
        "native/parent.cc",
        "native/queue.cc",
        "native/readable.cc",
        "native/reap.cc",
        "native/steering.cc",
        "native/systemd.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1 }
      }
    }
  ]
}
