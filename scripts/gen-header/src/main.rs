//! The C header generator: `make header` and `make check-header` run `cargo run -p
//! mln-ipc-gen-header -- OUT`, which writes what the pinned cbindgen (`cbindgen.toml`) makes
//! of melon-ipc's sources (the package two directories up) to OUT. `include/mln_ipc.h` is
//! never written here: `make header` copies OUT there and `make check-header` fails when
//! the committed file differs.
//!
//! cbindgen used to run in melon-ipc's build.rs, on every build, so every crate that
//! depends on melon-ipc compiled cbindgen and its syn/serde tree; this package is the only
//! one that depends on it (`rust-tests/light_build.rs` fails if it comes back into the
//! library's dependencies).
//!
//! Exit status 0 when OUT was written; otherwise 1, with OUT removed (no stale copy for
//! `make check-header` to trust) and the reason on stderr.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: cargo run -p mln-ipc-gen-header -- OUT");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    match generate(&root) {
        Ok(text) => match write(&out, &text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&out, &format!("cannot write {}: {e}", out.display())),
        },
        Err(e) => fail(&out, &e),
    }
}

/// The header text for the sources under `root` (melon-ipc's package root).
fn generate(root: &Path) -> Result<String, String> {
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .map_err(|e| format!("cbindgen.toml is not a valid cbindgen configuration: {e}"))?;
    // A source that does not parse fails to compile too, and rustc (`make build`) says
    // more; cbindgen's error names the file it stopped at.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/lib.rs"))
        .generate()
        .map_err(|e| format!("cbindgen could not generate mln_ipc.h: {e}"))?;
    let mut text = Vec::new();
    bindings.write(&mut text);
    let text = String::from_utf8(text).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))?;
    Ok(c89_comments(&text))
}

/// Writes beside `out` first and renames, so `out` is either the whole new header or absent.
fn write(out: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, out)
}

fn fail(out: &Path, why: &str) -> ExitCode {
    let _ = fs::remove_file(out);
    eprintln!("mln-ipc-gen-header: error: {why}");
    ExitCode::FAILURE
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
