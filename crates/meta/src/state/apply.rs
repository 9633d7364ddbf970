//! Applying one log entry: housekeeping, request de-duplication, then the
//! command, as the user it names.

use cairn_proto::{ApiError, ErrorCode};

use crate::records::StateError;
use crate::state::command::{Command, Output, Request, Response};
use crate::state::tables::Tables;

impl Tables<'_> {
    /// Applies one log entry's request and returns its outcome: a refusal
    /// is an outcome, only a storage fault is an error. A request id seen
    /// before is not applied again: its first outcome is returned.
    /// A batch's requests are each applied so, in order, after one round
    /// of housekeeping for the entry.
    pub fn apply_request(&mut self, request: &Request) -> Result<Response, StateError> {
        self.forget_requests(request.now_ns)?;
        self.forget_sessions(request.now_ns)?;
        let Command::Batch(requests) = &request.command else {
            return self.apply_once(request);
        };
        let mut responses = Vec::with_capacity(requests.len());
        for inner in requests {
            responses.push(self.apply_once(inner)?);
        }
        Ok(Ok(Output::Batch(responses)))
    }

    /// Applies `request` unless its id was seen: its outcome either way.
    fn apply_once(&mut self, request: &Request) -> Result<Response, StateError> {
        let Some(id) = request.request_id else {
            return outcome(self.apply(request));
        };
        if let Some(first) = self.remembered(id)? {
            return Ok(first);
        }
        let response = outcome(self.apply(request))?;
        self.remember(id, request.now_ns, &response)?;
        Ok(response)
    }

    /// Applies one command. On `Err(StateError::Api)` nothing was written.
    pub fn apply(&mut self, request: &Request) -> Result<Output, StateError> {
        let now = request.now_ns;
        let who = &match &request.acting {
            None => self.ns.principal(request.user.as_deref())?,
            Some(acting) => self.ns.acting_principal(request.user.as_deref(), acting)?,
        };
        match &request.command {
            Command::Mkdir(req) => self.mkdir(who, req, now).map(Output::Mutation),
            Command::MakeNode(req) => self.make_node(who, req, now).map(Output::Mutation),
            Command::Link(req) => self.hard_link(who, req, now).map(Output::Mutation),
            Command::Commit(req) => self.commit(who, req, now).map(Output::Commit),
            Command::Remove(req) => self.remove(who, req, None, now).map(Output::Mutation),
            Command::RemoveOpen { request, session } => self
                .remove(who, request, Some(session), now)
                .map(Output::Mutation),
            Command::Release { id, session } => self.release(session, *id).map(Output::Mutation),
            Command::Rename(req) => self.rename(who, req, None, now).map(Output::Mutation),
            Command::RenameOpen { request, session } => self
                .rename(who, request, Some(session), now)
                .map(Output::Mutation),
            Command::Copy(req) => self.copy(who, req, now).map(Output::Mutation),
            Command::Chmod(req) => self.chmod(who, req, now).map(Output::Mutation),
            Command::Chown(req) => self.chown(who, req, now).map(Output::Mutation),
            Command::SetTimes(req) => self.set_times(who, req, now).map(Output::Mutation),
            Command::SetXattr(req) => self.set_xattr(who, req, now).map(Output::Mutation),
            Command::RemoveXattr(req) => self.remove_xattr(who, req, now).map(Output::Mutation),
            Command::Purge { max_entries } => self.purge(*max_entries, now),
            Command::RegisterNode(req) => self.register_node(req, now).map(Output::Map),
            Command::SetNodeState { id, state, expect } => self
                .set_node_state(id, *state, *expect, now)
                .map(Output::Map),
            Command::RemoveNode { id } => self.remove_node(id).map(Output::Map),
            Command::SetParams {
                replication,
                chunk_size_bytes,
            } => self
                .set_params(*replication, *chunk_size_bytes)
                .map(Output::Map),
            Command::BootstrapAdmin { password_hash } => self.bootstrap_admin(password_hash, now),
            Command::AddUser {
                name,
                password_hash,
                groups,
                admin,
            } => self
                .add_user(who, name, password_hash, groups, *admin, now)
                .map(Output::User),
            Command::SetPassword {
                name,
                password_hash,
            } => self
                .set_password(who, name, password_hash)
                .map(Output::User),
            Command::RemoveUser { name } => self.remove_user(who, name).map(Output::User),
            Command::CreateSession {
                token_hash,
                name,
                expires_ms,
                user_version,
            } => self
                .create_session(token_hash, name, *expires_ms, *user_version, now)
                .map(Output::User),
            Command::EndSession { token_hash } => self.logout(token_hash).map(Output::User),
            Command::EndUserSessions { name } => {
                self.end_user_sessions(who, name).map(Output::User)
            }
            Command::CreateAccessKey {
                id,
                user,
                sealed_secret,
            } => self
                .create_access_key(who, id, user, sealed_secret, now)
                .map(Output::Key),
            Command::RemoveAccessKey { id } => self.remove_access_key(who, id).map(Output::Key),
            // `apply_request` opens the one batch an entry may be.
            Command::Batch(_) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "a batch of requests cannot hold another batch",
            )
            .into()),
        }
    }
}

/// A refusal is the request's outcome; a storage fault stays an error.
fn outcome(result: Result<Output, StateError>) -> Result<Response, StateError> {
    match result {
        Ok(output) => Ok(Ok(output)),
        Err(StateError::Api(refusal)) => Ok(Err(refusal)),
        Err(fatal) => Err(fatal),
    }
}
