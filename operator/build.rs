//! The operator's release link: relative relocations packed (see `build/relr.rs`), about
//! 1 MiB less resident in every operator process.

#[path = "../build/relr.rs"]
mod relr;

fn main() {
    relr::pack_relative_relocs("uploadbucket-operator");
}
