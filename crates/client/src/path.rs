//! Remote paths as people type them: relative to a working directory (the
//! shell's, or the user's home for one-shot commands), with `.` and `..`.
//! Resolution is lexical, as Cairn has no symbolic links: `a/../b` is `b`.

use cairn_proto::path::{join, split_path};
use cairn_proto::ApiError;

/// The absolute, normal path that `path` names from the directory `cwd`
/// (itself absolute): `/x` as it is, `x` and `./x` inside `cwd`, `..` one
/// up (the root's `..` is the root, as in POSIX).
pub fn resolve(cwd: &str, path: &str) -> Result<String, ApiError> {
    let mut names: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        cwd.split('/').filter(|n| !n.is_empty()).collect()
    };
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                names.pop();
            }
            name => names.push(name),
        }
    }
    // Every name is checked as the server would.
    Ok(join(&split_path(&join(&names))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relative_paths_start_at_the_working_directory() {
        assert_eq!(resolve("/home/ann", "x").unwrap(), "/home/ann/x");
        assert_eq!(resolve("/home/ann", "./x/").unwrap(), "/home/ann/x");
        assert_eq!(resolve("/home/ann", "../bob/y").unwrap(), "/home/bob/y");
        assert_eq!(resolve("/home/ann", "/abs").unwrap(), "/abs");
        assert_eq!(resolve("/home/ann", "").unwrap(), "/home/ann");
        assert_eq!(resolve("/", "../../..").unwrap(), "/");
        assert_eq!(resolve("/a", "b//c/./..").unwrap(), "/a/b");
        assert!(resolve("/", "a\0b").is_err());
    }

    proptest! {
        /// The result is absolute and normal: resolving it again changes
        /// nothing, from anywhere.
        #[test]
        fn results_are_absolute_and_normal(cwd in "(/[a-c]{1,2}){0,3}", path in "[a-c./]{0,12}") {
            let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
            if let Ok(resolved) = resolve(&cwd, &path) {
                prop_assert!(resolved.starts_with('/'));
                prop_assert_eq!(resolve("/elsewhere", &resolved).unwrap(), resolved.clone());
                prop_assert!(!resolved.split('/').any(|n| n == "." || n == ".."));
            }
        }
    }
}
