//! The homeserver's identity: one Ed25519 keypair kept in the data directory.
//!
//! The key *is* the homeserver: clients find it through its public key (the pkarr packet
//! signed with it), Pubky TLS presents it as a raw public key, and grants name it as their
//! audience. Losing it means every user record pointing here dangles; leaking it lets anyone
//! impersonate the server. Hence:
//!
//! * `<data_dir>/secret` holds the 32-byte secret as 64 hex characters (lowercase when we
//!   write it, one trailing newline; the reference homeserver and `pkarr` use the same
//!   format, so keys can move between them). It is created on first start with mode `0600`
//!   through a temporary file that is hard-linked into place, so a crash never leaves a
//!   half-written secret and two processes starting at once agree on one key.
//! * An existing file that is readable or writable by "other" is refused (the secret must be
//!   considered leaked and the operator should decide, not us); group access only warns,
//!   because operators legitimately share secrets with a service group.
//! * A malformed file is refused with the path and what was expected. We never "repair" it
//!   by generating a new key: that would silently change the server's identity.
//! * `<data_dir>/public_key` is written by the caller only after the first successful
//!   publish, atomically (temporary file + rename), so scripts can wait for the file and then
//!   know the key is resolvable on the DHT.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use pkarr::{Keypair, PublicKey};
use rand::Rng;

/// File name of the secret inside the data directory.
pub const SECRET_FILE: &str = "secret";
/// File name of the public key (z-base-32, one line) inside the data directory.
pub const PUBLIC_KEY_FILE: &str = "public_key";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The data directory or the secret file could not be read or written.
    #[error("homeserver identity: {action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The secret file is accessible by other users.
    #[error(
        "homeserver identity: refusing {path}: it is accessible by other users (mode {mode:04o}); \
         the secret may have leaked. Check it, then restrict it with `chmod 600 {path}` \
         (or replace the key)"
    )]
    WorldAccessible {
        /// The secret file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret file does not hold 64 hex characters.
    #[error(
        "homeserver identity: refusing {path}: expected the 32-byte Ed25519 secret as 64 hex \
         characters (optionally followed by a newline), found {found}"
    )]
    Malformed {
        /// The secret file.
        path: PathBuf,
        /// A description of what was found (never the content itself).
        found: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IdentityError + 'a {
    move |source| IdentityError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the homeserver keypair from `<data_dir>/secret`, creating the directory and a new
/// random key (mode `0600`) on first start.
///
/// # Errors
///
/// I/O failures, a secret file accessible by "other" users, or a malformed secret file
/// (see [`IdentityError`]). A malformed or exposed file is never overwritten.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    load_or_install(data_dir, Keypair::random)
}

/// Loads the keypair from `<data_dir>/secret`, or installs the one `make` returns when
/// there is none yet (as [`load_or_create`] does with a random key; `homeserver restore`
/// installs the backed-up key). An existing key is never replaced: the caller compares.
pub fn load_or_install(
    data_dir: &Path,
    make: impl FnOnce() -> Keypair,
) -> Result<Keypair, IdentityError> {
    let path = data_dir.join(SECRET_FILE);
    match load(&path) {
        Ok(keypair) => return Ok(keypair),
        Err(IdentityError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(other) => return Err(other),
    }

    create_private_dir(data_dir)?;
    let keypair = make();
    let mut contents = hex::encode(keypair.secret_key());
    contents.push('\n');

    let tmp = temp_path(data_dir, SECRET_FILE);
    let result = write_new_file(&tmp, contents.as_bytes(), 0o600)
        .map_err(io_err("write", &tmp))
        // A hard link fails if the target exists: if another process created the secret
        // between our check and now, we keep theirs instead of replacing it.
        .and_then(|()| match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("create", &path)(e)),
        });
    // Best effort: the temporary name is ours alone and carries no information once linked.
    let _ = fs::remove_file(&tmp);

    if result? {
        sync_dir(data_dir).map_err(io_err("sync directory", data_dir))?;
        tracing::info!(
            path = %path.display(),
            public_key = %keypair.public_key(),
            "created a new homeserver identity"
        );
        Ok(keypair)
    } else {
        load(&path)
    }
}

/// Reads and validates an existing secret file.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let metadata = fs::metadata(path).map_err(io_err("read", path))?;
    check_permissions(path, &metadata)?;

    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let malformed = |found: String| IdentityError::Malformed {
        path: path.to_path_buf(),
        found,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| malformed(format!("{} bytes that are not UTF-8 text", bytes.len())))?;
    let hex_text = text.trim_end_matches(['\n', '\r']);
    if hex_text.len() != 64 {
        return Err(malformed(format!("{} characters", hex_text.len())));
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut secret)
        .map_err(|_| malformed("characters other than hex digits".to_string()))?;
    Ok(Keypair::from_secret_key(&secret))
}

#[cfg(unix)]
fn check_permissions(path: &Path, metadata: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;

    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(IdentityError::WorldAccessible {
            path: path.to_path_buf(),
            mode,
        });
    }
    if mode & 0o070 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:04o}"),
            "the homeserver secret is accessible by its group; 0600 is recommended"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _metadata: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

/// Writes `<data_dir>/public_key` (z-base-32 and a newline) atomically: readers see either
/// no file, the old content or the new content, never a partial line.
///
/// Call it only after the first successful publish, so that its appearance means "the key
/// is resolvable".
///
/// # Errors
///
/// Any I/O error creating the directory, writing the temporary file or renaming it.
pub fn write_public_key_file(data_dir: &Path, public_key: &PublicKey) -> io::Result<()> {
    fs::create_dir_all(data_dir)?;
    let path = data_dir.join(PUBLIC_KEY_FILE);
    let tmp = temp_path(data_dir, PUBLIC_KEY_FILE);
    let contents = format!("{}\n", public_key.to_z32());
    let result = write_new_file(&tmp, contents.as_bytes(), 0o644)
        .and_then(|()| fs::rename(&tmp, &path))
        .and_then(|()| sync_dir(data_dir));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A unique sibling name, so concurrent writers never share a temporary file.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let nonce: u64 = rand::thread_rng().r#gen();
    dir.join(format!(".{name}.tmp-{}-{nonce:016x}", std::process::id()))
}

/// Creates `path` (which must not exist) with `mode`, writes `contents` and flushes them to
/// disk.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err("create directory", dir))
}

/// Makes a rename/link in `dir` durable (directories cannot be synced outside Unix).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn created_private_then_reloaded_identical() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");

        let first = load_or_create(&data_dir).unwrap();
        let secret_path = data_dir.join(SECRET_FILE);
        #[cfg(unix)]
        assert_eq!(mode_of(&secret_path), 0o600);

        let text = fs::read_to_string(&secret_path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(
            text.trim_end()
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_eq!(text.trim_end(), hex::encode(first.secret_key()));

        let again = load_or_create(&data_dir).unwrap();
        assert_eq!(again.secret_key(), first.secret_key());
        assert_eq!(again.public_key(), first.public_key());

        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![SECRET_FILE.to_string()]);
    }

    #[test]
    fn reads_a_reference_style_key_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let keypair = Keypair::random();
        let path = dir.path().join(SECRET_FILE);
        write_new_file(&path, hex::encode(keypair.secret_key()).as_bytes(), 0o600).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), keypair);
    }

    #[test]
    fn malformed_secret_is_refused_and_left_alone() {
        let cases: [&[u8]; 5] = [b"", b"abc\n", &[b'g'; 64], &[b'a'; 66], &[0xff; 64]];
        for contents in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(SECRET_FILE);
            write_new_file(&path, contents, 0o600).unwrap();

            let err = load_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(err, IdentityError::Malformed { .. }),
                "{contents:?}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("64 hex"), "{message}");
            // Never replaced by a fresh key.
            assert_eq!(fs::read(&path).unwrap(), contents);
        }
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keypair = load_or_create(dir.path()).unwrap();
        let path = dir.path().join(SECRET_FILE);

        set_mode(&path, 0o644);
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(err, IdentityError::WorldAccessible { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");

        // Group access is tolerated (with a warning), the key is unchanged.
        set_mode(&path, 0o640);
        assert_eq!(load_or_create(dir.path()).unwrap(), keypair);
    }

    #[test]
    fn public_key_file_is_one_z32_line() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keypair::random().public_key();
        write_public_key_file(dir.path(), &first).unwrap();
        let second = Keypair::random().public_key();
        write_public_key_file(dir.path(), &second).unwrap();

        let text = fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", second.to_z32()));
        assert_eq!(text.trim_end().parse::<PublicKey>().unwrap(), second);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
