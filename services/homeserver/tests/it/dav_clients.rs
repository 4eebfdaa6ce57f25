//! Real WebDAV clients from Debian against `/dav/<user>/` (`make e2e-dav`): the litmus
//! suites basic, copymove, props and locks; rclone copying a tree of 1,000 files up
//! and back; a scripted cadaver session. Ignored in `make test` (it needs the three
//! packages); the make target installs them and prints the summary the README shows.
//!
//! Every client logs in with HTTP Basic: the public key as user name, the session's
//! bearer token as password.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .expect("the client runs (is it installed?)");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The summary lines of a litmus run (`<- summary for `…`: of N tests run: …`).
fn litmus_summary(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.contains("summary for"))
        .map(str::to_owned)
        .collect()
}

// The clients run as blocking child processes: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs litmus, rclone and cadaver: make e2e-dav"]
async fn litmus_rclone_and_cadaver() {
    let s = common::start().await;
    let u = s.user().await;
    let base = s.url(&format!("/dav/{}/pub/", u.z32()));
    let work = tempfile::tempdir().unwrap();
    let mut summary = Vec::new();
    let mut failed = Vec::new();

    // litmus: each suite in its own collection, so a suite's leftovers do not meet
    // the next one.
    for suite in ["basic", "copymove", "props", "locks"] {
        let collection = format!("{base}{suite}/");
        let r = s
            .http
            .request(reqwest::Method::from_bytes(b"MKCOL").unwrap(), &collection)
            .bearer_auth(&u.token)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "MKCOL {collection}: {}",
            r.status()
        );
        let output = run(Command::new("litmus")
            .env("TESTS", suite)
            .current_dir(work.path())
            .args([&collection, &u.z32(), &u.token]));
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        summary.extend(litmus_summary(&stdout));
        if !output.status.success() || stdout.contains("FAIL") {
            failed.push(suite);
        }
    }

    // rclone: 1,000 files in nested folders up, down again, byte for byte.
    let up = work.path().join("up");
    for i in 0..1000 {
        let dir = up.join(format!("d{}/e{}", i % 10, i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(i * 37 % 5000)).map(|b| (b * i % 251) as u8).collect();
        std::fs::write(dir.join(format!("f{i}.bin")), body).unwrap();
    }
    let obscured = run(Command::new("rclone").args(["obscure", &u.token]));
    let pass = String::from_utf8_lossy(&obscured.stdout).trim().to_string();
    let remote = |command: &mut Command| -> Output {
        run(command
            .env("RCLONE_CONFIG_HS_TYPE", "webdav")
            .env("RCLONE_CONFIG_HS_URL", &base)
            .env("RCLONE_CONFIG_HS_VENDOR", "other")
            .env("RCLONE_CONFIG_HS_USER", u.z32())
            .env("RCLONE_CONFIG_HS_PASS", &pass)
            .env("RCLONE_CONFIG", "/dev/null"))
    };
    let started = std::time::Instant::now();
    let out = remote(Command::new("rclone").args([
        "copy",
        up.to_str().unwrap(),
        "hs:rclone",
        "--transfers",
        "8",
    ]));
    assert!(out.status.success(), "rclone copy up");
    let upload = started.elapsed();
    let down = work.path().join("down");
    let started = std::time::Instant::now();
    let out = remote(Command::new("rclone").args([
        "copy",
        "hs:rclone",
        down.to_str().unwrap(),
        "--transfers",
        "8",
    ]));
    assert!(out.status.success(), "rclone copy down");
    let download = started.elapsed();
    let (files, bytes) = compare_trees(&up, &down);
    assert_eq!(files, 1000);
    summary.push(format!(
        "rclone: 1000 files ({bytes} bytes) up in {:.1} s, back in {:.1} s, identical",
        upload.as_secs_f64(),
        download.as_secs_f64()
    ));

    // cadaver: a scripted session (credentials from .netrc).
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let host = s.server.http_addr.ip().to_string();
    std::fs::write(
        home.join(".netrc"),
        format!("machine {host}\nlogin {}\npassword {}\n", u.z32(), u.token),
    )
    .unwrap();
    std::fs::write(work.path().join("note.txt"), "hello from cadaver\n").unwrap();
    let script = "mkcol cad\ncd cad\nput note.txt\nls\ncopy note.txt copy.txt\nmove copy.txt moved.txt\nlock note.txt\nunlock note.txt\nget moved.txt back.txt\npropget note.txt\ndelete note.txt\nls\ncd ..\nrmcol cad\nquit\n";
    let mut child = Command::new("cadaver")
        .env("HOME", &home)
        .current_dir(work.path())
        .arg(&base)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cadaver runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        std::fs::read_to_string(work.path().join("back.txt")).unwrap(),
        "hello from cadaver\n"
    );
    let cadaver_failed = stdout.matches("failed").count();
    assert_eq!(cadaver_failed, 0, "a cadaver command failed");
    summary.push(format!(
        "cadaver: mkcol, put, ls, copy, move, lock, unlock, get, propget, delete, rmcol: {} commands, none failed",
        script.lines().count() - 1
    ));

    println!("\n== WebDAV clients summary ==");
    for line in &summary {
        println!("{line}");
    }
    assert!(failed.is_empty(), "litmus suites failed: {failed:?}");
}

/// Files and bytes of two trees, asserting they are byte-identical.
fn compare_trees(a: &Path, b: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in walk(a) {
        let relative = entry.strip_prefix(a).unwrap();
        let left = std::fs::read(&entry).unwrap();
        let right = std::fs::read(b.join(relative))
            .unwrap_or_else(|_| panic!("{} came back", relative.display()));
        assert_eq!(left, right, "{} identical", relative.display());
        files += 1;
        bytes += left.len() as u64;
    }
    assert_eq!(walk(b).len(), files, "nothing extra came back");
    (files, bytes)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
