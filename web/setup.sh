# Sourced by web/build and web/test: installs what the browser build and tests need, when
# absent. The wasm32 target (rustup), wasm-bindgen-cli at exactly the version of the
# wasm-bindgen crate in Cargo.lock (crates.io; the CLI refuses modules of any other), and
# Debian's chromium and chromium-driver (apt-get).

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "web: installing the wasm32-unknown-unknown target" >&2
    rustup target add wasm32-unknown-unknown
  fi
}

# The wasm-bindgen crate's version in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_bindgen() {
  local wanted have=""
  wanted=$(wasm_bindgen_version)
  if [ -z "$wanted" ]; then
    echo "web: no wasm-bindgen in Cargo.lock" >&2
    return 1
  fi
  if command -v wasm-bindgen >/dev/null; then
    have=$(wasm-bindgen --version | awk '{ print $2 }')
  fi
  if [ "$have" != "$wanted" ] || ! command -v wasm-bindgen-test-runner >/dev/null; then
    echo "web: installing wasm-bindgen-cli $wanted (found '${have:-none}'); a few minutes" >&2
    # Unoptimised: it builds in half the CPU time of a release build (about 2.5 minutes
    # of CPU instead of 4.5), and takes only seconds longer on this project's modules.
    cargo install --quiet --debug wasm-bindgen-cli --version "=$wanted"
  fi
}

ensure_chromium() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "web: installing Debian's chromium and chromium-driver" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null
  fi
}
