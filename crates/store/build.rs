// sqlx::migrate! embeds the migration files at compile time; a new file must trigger
// a rebuild of this crate.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
