//! What every client command stands on: the file API, and where relative
//! remote paths start (the shell's working directory; the user's home in
//! one-shot commands, as `cairn ls` lists it).

use std::sync::Mutex;

use cairn_client::{ClientError, Files, MetaClient, Target};
use cairn_proto::FileId;

pub struct Context {
    pub files: Files,
    /// The logged-in user, when the config names one: their home is known
    /// without asking.
    user: Option<String>,
    /// The working directory; `None` until set or first needed (then the
    /// user's home).
    cwd: Mutex<Option<String>>,
}

/// A remote file or directory as typed: `id:42`, or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Id(FileId),
    Path(String),
}

impl Remote {
    pub fn target(&self) -> Target<'_> {
        match self {
            Remote::Id(id) => Target::Id(*id),
            Remote::Path(path) => Target::Path(path),
        }
    }
}

impl Context {
    pub fn new(meta: MetaClient, user: Option<String>) -> Context {
        Context {
            files: Files::new(meta),
            user,
            cwd: Mutex::new(None),
        }
    }

    pub fn meta(&self) -> &MetaClient {
        self.files.meta()
    }

    /// The user's home directory.
    pub async fn home(&self) -> Result<String, ClientError> {
        match &self.user {
            Some(user) => Ok(format!("/home/{user}")),
            None => Ok(self.meta().whoami().await?.home),
        }
    }

    /// The working directory (the home until set).
    pub async fn cwd(&self) -> Result<String, ClientError> {
        if let Some(cwd) = self.cwd.lock().expect("cwd lock").clone() {
            return Ok(cwd);
        }
        let home = self.home().await?;
        *self.cwd.lock().expect("cwd lock") = Some(home.clone());
        Ok(home)
    }

    pub fn set_cwd(&self, path: String) {
        *self.cwd.lock().expect("cwd lock") = Some(path);
    }

    /// The absolute path `typed` names: absolute as it is, relative from
    /// the working directory.
    pub async fn resolve(&self, typed: &str) -> Result<String, ClientError> {
        if typed.starts_with('/') {
            return Ok(cairn_client::path::resolve("/", typed)?);
        }
        let cwd = self.cwd().await?;
        Ok(cairn_client::path::resolve(&cwd, typed)?)
    }

    /// `id:42` or a path (resolved as [`Context::resolve`] does).
    pub async fn remote(&self, typed: &str) -> Result<Remote, ClientError> {
        match typed.strip_prefix("id:") {
            Some(id) => id.parse().map(Remote::Id).map_err(|_| {
                ClientError::invalid(format!(
                    "{typed:?} is not a file id; write id:<number>, as in id:42"
                ))
            }),
            None => Ok(Remote::Path(self.resolve(typed).await?)),
        }
    }
}
