//! Generates the C header from the crate sources with the pinned cbindgen (cbindgen.toml).
//!
//! Output: `$OUT_DIR/mln_ipc.h`, and a copy beside the library artifacts
//! (`target/<profile>/mln_ipc.h`) where the Makefile finds it. `include/mln_ipc.h` is never
//! written here: `make header` copies the generation there and `make check-header` fails
//! when the committed file differs.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    // rust-tests/ctests.rs compiles the C tests with the `cc` crate at test time, where
    // cargo's TARGET and HOST (which `cc` needs to pick the compiler) are not set.
    for var in ["TARGET", "HOST"] {
        let v = env::var(var).unwrap_or_default();
        println!("cargo:rustc-env=MLN_IPC_BUILD_{var}={v}");
    }

    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out; the profile
    // directory is where libmln_ipc.a lands.
    let profile_dir = out_dir.ancestors().nth(3).map(Path::to_path_buf);
    soname(profile_dir.as_deref());
    let copy = profile_dir.as_ref().map(|d| d.join("mln_ipc.h"));

    let config = cbindgen::Config::from_file(manifest_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is not a valid cbindgen configuration");
    let generated = cbindgen::Builder::new()
        .with_config(config)
        .with_src(manifest_dir.join("src/lib.rs"))
        .generate();
    match generated {
        Ok(bindings) => {
            let header = out_dir.join("mln_ipc.h");
            let mut text = Vec::new();
            bindings.write(&mut text);
            let text = String::from_utf8(text).expect("cbindgen writes UTF-8");
            fs::write(&header, c89_comments(&text)).expect("cannot write the generated header");
            if let Some(copy) = copy {
                fs::copy(&header, &copy).expect("cannot copy the generated header");
            }
        }
        Err(e) => {
            // A source that does not parse also fails to compile, and rustc's message is
            // the useful one; do not leave a stale copy for `make check-header` to trust.
            if let Some(copy) = copy {
                let _ = fs::remove_file(copy);
            }
            println!("cargo:warning=cbindgen could not generate mln_ipc.h: {e}");
        }
    }
}

/// The shared library's SONAME: `libmln_ipc.so.0` (the melon build: `libmln_ipc_melon.so.0`,
/// so both can be installed side by side; `make install` / `make install-melon` install
/// `<soname>.<minor>.<patch>` with the links `<soname>` and the unversioned `.so`). A program
/// linked against the library records the SONAME, so the build directory gets a link
/// `<soname>` -> `libmln_ipc.so` too: a program linked there with `-L` and an rpath finds it.
fn soname(profile_dir: Option<&Path>) {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    // The melon build is `--no-default-features --features melon` (with both features the
    // crate is the standalone build, as in src/lib.rs).
    let melon = env::var_os("CARGO_FEATURE_MELON").is_some()
        && env::var_os("CARGO_FEATURE_STANDALONE").is_none();
    let stem = if melon {
        "libmln_ipc_melon"
    } else {
        "libmln_ipc"
    };
    let name = format!("{stem}.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{name}");
    #[cfg(unix)]
    if let Some(dir) = profile_dir {
        let link = dir.join(&name);
        // Dangling until the library is linked; refreshed on every run of this script.
        let _ = fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink("libmln_ipc.so", &link) {
            println!(
                "cargo:warning=cannot link {} -> libmln_ipc.so: {e}",
                link.display()
            );
        }
    }
}

/// cbindgen ends some `#endif` lines with a `//` comment (`#endif // __cplusplus`), which is
/// not a comment in C89 (`gcc -std=c89`: "extra tokens at end of #endif directive"): those
/// become `/* ... */`, so the header compiles in every C dialect Melon programs use.
fn c89_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.split_once("//") {
            Some((code, comment)) if code.trim_start().starts_with('#') => {
                out.push_str(code.trim_end());
                out.push_str(" /* ");
                out.push_str(comment.trim());
                out.push_str(" */");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
