# Sourced by scripts/setup, scripts/lab and scripts/test: puts the Rust toolchain on PATH when
# `sudo` hid it. rustup installs into the invoking user's ~/.cargo and ~/.rustup, and sudo's
# secure_path drops ~/.cargo/bin: so when root has no cargo of its own, the invoking user's
# toolchain is used (its rustup home only; downloads and builds stay root's).
isthmus_rust_env() {
    command -v cargo >/dev/null 2>&1 && return 0
    if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        return 0
    fi
    if [ -n "${SUDO_USER:-}" ]; then
        local user_home
        user_home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
        if [ -n "$user_home" ] && [ -x "$user_home/.cargo/bin/cargo" ]; then
            export PATH="$user_home/.cargo/bin:$PATH"
            export RUSTUP_HOME="${RUSTUP_HOME:-$user_home/.rustup}"
            return 0
        fi
    fi
    return 0
}
isthmus_rust_env
