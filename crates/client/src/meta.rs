//! Calls to the metadata service's HTTP/JSON API, with failover across the
//! members of a metadata group.
//!
//! A client knows a list of member addresses and sends each call to the
//! member it believes leads (the last one that answered as leader; a
//! process may start from a remembered one, [`MetaClient::with_leader_hint`]).
//! It follows a member's redirect (or its `leader` hint) to the leader,
//! moves on to the next member when one cannot be reached, and backs off
//! while no leader is elected, until the failover timeout
//! ([`FAILOVER_TIMEOUT`] unless set) has passed.
//!
//! A member that accepts the connection but does not answer (paused,
//! hung, its disk stalled) is found out quickly: after [`PROBE_AFTER`]
//! without an answer the client asks its `/v1/health` on the side; if that
//! does not answer either within [`PROBE_TIMEOUT`], the attempt is given
//! up and the next member tried. A live member that is merely slow answers
//! the probe and keeps the attempt.
//!
//! Every call may be retried: reads are idempotent, and every write
//! carries a request id (the same on every retry), with which the state
//! machine applies it once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::api::{
    Acting, AddMemberRequest, AddUserRequest, ChmodRequest, ChownRequest, CommitRequest,
    CommitResponse, GrantRequest, GrantResponse, HeartbeatRequest, HeartbeatResponse,
    KeyCreateRequest, KeyCreated, KeyInfo, KeyRemoveRequest, KeySecret, KeysResponse, LinkRequest,
    ListResponse, LoginRequest, LoginResponse, MakeNodeRequest, MembersResponse, MkdirRequest,
    MoveRequest, MutationResponse, NodeRequest, PasswdRequest, ReferencedRequest,
    ReferencedResponse, RegisterRequest, ReleaseRequest, RemoveMemberRequest, RemoveNodeRequest,
    RemoveRequest, SnapshotResponse, Stat, StatusResponse, TimesRequest, UserRequest, UserResponse,
    UsersResponse, WalkResponse, WhoAmI, XattrRemoveRequest, XattrSetRequest, XattrsResponse,
    ACCESS_KEY_HEADER, ACT_AS_HEADER, BEARER_PREFIX, CLUSTER_TOKEN_HEADER, REQUEST_ID_HEADER,
    STALE_OK_HEADER,
};
use cairn_proto::{ApiError, ClusterMap, ErrorCode, FileId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ClientError;
use cairn_transport::ClientTls;

pub use crate::limits::FAILOVER_TIMEOUT;
use crate::limits::{
    ADMIN_ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT, BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT,
    MAX_FREE_HOPS, MAX_MEMBERS, NOBODY_ANSWERS_TIMEOUT, PROBE_AFTER, PROBE_TIMEOUT,
};

/// A file or directory, by path or by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Path(&'a str),
    Id(FileId),
}

impl Target<'_> {
    /// The query naming it: `path=...` or `id=...`.
    fn query(&self) -> (&'static str, String) {
        match self {
            Target::Path(path) => ("path", path.to_string()),
            Target::Id(id) => ("id", id.to_string()),
        }
    }
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Path(path) => f.write_str(path),
            Target::Id(id) => write!(f, "id:{id}"),
        }
    }
}

/// Which page of a listing: after the `next` of the previous one, at most
/// `limit` entries (the server's default and maximum apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    /// The member addresses given (`--meta a,b,c`), `host:port`.
    members: Arc<[String]>,
    /// Where the next call goes: the last leader seen (a hint may name a
    /// member not in `members`, as after a membership change).
    target: Arc<Mutex<String>>,
    stale_ok: bool,
    failover_timeout: Duration,
    /// Sent on every call when set: the metadata service asks chunk
    /// servers for it (see `cairn_proto::api::cluster_token`).
    cluster_token: Option<String>,
    /// A user's session token (from `login`), sent as `Authorization: Bearer`.
    token: Option<String>,
    /// With the cluster token: act for the user of this S3 access key.
    access_key: Option<Arc<str>>,
    /// With an admin's session: act as this local identity (the header
    /// value of `ACT_AS_HEADER`; `cairn mount --allow-other`).
    acting: Option<Arc<str>>,
    /// Plain HTTP, or TLS trusting the cluster's CA.
    tls: ClientTls,
}

impl MetaClient {
    /// `addrs` is one `host:port` or a comma-separated list of the members
    /// of the metadata group (an `http://` prefix is accepted).
    pub fn new(addrs: &str) -> MetaClient {
        let mut members: Vec<String> = addrs
            .split(',')
            .map(|a| {
                let a = a.trim();
                let a = a.strip_prefix("http://").unwrap_or(a);
                a.strip_prefix("https://")
                    .unwrap_or(a)
                    .trim_end_matches('/')
            })
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        members.dedup();
        members.truncate(MAX_MEMBERS);
        if members.is_empty() {
            members.push(cairn_proto::DEFAULT_META_ADDR.to_string());
        }
        let tls = ClientTls::plain();
        MetaClient {
            http: http_client(&tls),
            target: Arc::new(Mutex::new(members[0].clone())),
            members: members.into(),
            stale_ok: false,
            failover_timeout: FAILOVER_TIMEOUT,
            cluster_token: None,
            token: None,
            access_key: None,
            acting: None,
            tls,
        }
    }

    /// Talks TLS (`https://`) when `tls` has the cluster's CA.
    pub fn with_tls(mut self, tls: ClientTls) -> MetaClient {
        self.http = http_client(&tls);
        self.tls = tls;
        self
    }

    /// Calls as the user whose session `token` is (see [`MetaClient::login`]).
    pub fn with_token(mut self, token: Option<String>) -> MetaClient {
        self.token = token;
        self
    }

    /// Proves membership of the cluster on every call (chunk servers).
    pub fn with_cluster_token(mut self, token: Option<String>) -> MetaClient {
        self.cluster_token = token;
        self
    }

    /// Acts for the user who owns the access key `id` (a cluster process
    /// with the cluster token only: the S3 gateway). The metadata service
    /// checks the key on every call and logs the delegation.
    pub fn with_access_key(mut self, id: Option<&str>) -> MetaClient {
        self.access_key = id.map(Arc::from);
        self
    }

    /// Acts as a local process's `acting` identity (an admin's session
    /// only: `cairn mount --allow-other`). The metadata service checks
    /// that the session is an admin's and logs the delegation.
    pub fn with_acting(mut self, acting: Option<&Acting>) -> MetaClient {
        self.acting = acting.map(|a| Arc::from(a.header_value()));
        self
    }

    /// How long one call keeps trying members before it gives up.
    pub fn with_failover_timeout(mut self, timeout: Duration) -> MetaClient {
        self.failover_timeout = timeout;
        self
    }

    /// Reads may be answered by any member from its own state, which may
    /// lag the leader's (`--stale-ok`). Writes still go to the leader.
    pub fn with_stale_ok(mut self, stale_ok: bool) -> MetaClient {
        self.stale_ok = stale_ok;
        self
    }

    /// Sends the first call to `addr`, the member that led when this
    /// client's user last asked (see [`MetaClient::addr`]). Ignored unless
    /// it is one of the members given.
    pub fn with_leader_hint(self, addr: Option<&str>) -> MetaClient {
        if let Some(addr) = addr.filter(|a| self.members.iter().any(|m| m == a)) {
            self.set_target(addr.to_string());
        }
        self
    }

    /// How this client talks to the cluster (chunk clients use the same).
    pub fn tls(&self) -> &ClientTls {
        &self.tls
    }

    /// The member calls go to now (the last leader seen).
    pub fn addr(&self) -> String {
        self.target.lock().expect("meta target lock").clone()
    }

    /// Every member address this client was given.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get("/v1/status", &NO_QUERY).await
    }

    pub async fn map(&self) -> Result<ClusterMap, ClientError> {
        self.get("/v1/map", &NO_QUERY).await
    }

    pub async fn stat(&self, path: &str) -> Result<Stat, ClientError> {
        self.stat_target(Target::Path(path), false).await
    }

    pub async fn stat_id(&self, id: FileId) -> Result<Stat, ClientError> {
        self.stat_target(Target::Id(id), false).await
    }

    /// The stat of `target`; with `read`, of a file about to be read: with
    /// the capabilities to fetch its chunks, refused unless the caller may
    /// read it.
    pub async fn stat_target(&self, target: Target<'_>, read: bool) -> Result<Stat, ClientError> {
        self.stat_with(target, read, false).await
    }

    /// A stat, for reading (`read`: capabilities, refused unless the
    /// caller may read), with the readable extended attributes (`xattrs`).
    pub async fn stat_with(
        &self,
        target: Target<'_>,
        read: bool,
        xattrs: bool,
    ) -> Result<Stat, ClientError> {
        let (key, value) = target.query();
        let mut query = vec![(key, value.as_str())];
        if read {
            query.push(("read", "true"));
        }
        if xattrs {
            query.push(("xattrs", "true"));
        }
        self.get("/v1/fs/stat", &query).await
    }

    /// One page of a directory (or the file itself).
    pub async fn list_page(&self, path: &str, page: &Page) -> Result<ListResponse, ClientError> {
        self.get("/v1/fs/list", &page_query(path, page)).await
    }

    /// One page of everything below `path`, in byte order of full paths.
    pub async fn walk_page(&self, path: &str, page: &Page) -> Result<WalkResponse, ClientError> {
        self.get("/v1/fs/walk", &page_query(path, page)).await
    }

    /// The extended attributes of `target` the caller may read; with
    /// `name`, that one only.
    pub async fn xattrs(
        &self,
        target: Target<'_>,
        name: Option<&str>,
    ) -> Result<XattrsResponse, ClientError> {
        let (key, value) = target.query();
        let mut query = vec![(key, value.as_str())];
        if let Some(name) = name {
            query.push(("name", name));
        }
        self.get("/v1/fs/xattrs", &query).await
    }

    pub async fn set_xattr(
        &self,
        request: &XattrSetRequest,
    ) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/xattr/set", request).await
    }

    pub async fn remove_xattr(
        &self,
        request: &XattrRemoveRequest,
    ) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/xattr/remove", request).await
    }

    pub async fn mkdir(&self, request: &MkdirRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/mkdir", request).await
    }

    pub async fn commit(&self, request: &CommitRequest) -> Result<CommitResponse, ClientError> {
        self.post("/v1/fs/commit", request).await
    }

    /// A commit answered with the file's stat (`stat` in the answer, unless
    /// the file went away at once).
    pub async fn commit_and_stat(
        &self,
        request: &CommitRequest,
    ) -> Result<CommitResponse, ClientError> {
        let mut call = Call::post("/v1/fs/commit", request, ATTEMPT_TIMEOUT);
        call.query.push(("stat".to_string(), "true".to_string()));
        self.call(call).await
    }

    /// A symbolic link, pipe, socket or device node; answers its stat.
    pub async fn make_node(&self, request: &MakeNodeRequest) -> Result<Stat, ClientError> {
        self.post("/v1/fs/mknod", request).await
    }

    pub async fn link(&self, request: &LinkRequest) -> Result<Stat, ClientError> {
        self.post("/v1/fs/link", request).await
    }

    pub async fn release(&self, request: &ReleaseRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/release", request).await
    }

    pub async fn remove(&self, request: &RemoveRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/remove", request).await
    }

    pub async fn rename(&self, request: &MoveRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/rename", request).await
    }

    pub async fn copy(&self, request: &MoveRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/copy", request).await
    }

    pub async fn register(&self, request: &RegisterRequest) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/register", request).await
    }

    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.post("/v1/nodes/heartbeat", request).await
    }

    pub async fn drain_node(&self, request: &NodeRequest) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/drain", request).await
    }

    pub async fn undrain_node(&self, request: &NodeRequest) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/undrain", request).await
    }

    pub async fn remove_node(
        &self,
        request: &RemoveNodeRequest,
    ) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/remove", request).await
    }

    /// Which of `request.ids` some file references.
    pub async fn referenced(
        &self,
        request: &ReferencedRequest,
    ) -> Result<ReferencedResponse, ClientError> {
        self.post("/v1/chunks/referenced", request).await
    }

    pub async fn chmod(&self, request: &ChmodRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/chmod", request).await
    }

    pub async fn chown(&self, request: &ChownRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/chown", request).await
    }

    pub async fn set_times(&self, request: &TimesRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/times", request).await
    }

    /// A capability for chunk servers: to store a file's chunks, or an
    /// admin's for presence and repair calls.
    pub async fn grant(&self, request: &GrantRequest) -> Result<GrantResponse, ClientError> {
        self.post("/v1/chunks/grant", request).await
    }

    /// Opens a session; the answer's token goes in [`MetaClient::with_token`].
    pub async fn login(&self, request: &LoginRequest) -> Result<LoginResponse, ClientError> {
        self.post("/v1/auth/login", request).await
    }

    /// Ends the session of this client's token.
    pub async fn logout(&self) -> Result<UserResponse, ClientError> {
        self.post("/v1/auth/logout", &()).await
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/v1/auth/whoami", &NO_QUERY).await
    }

    /// One page of users, by name.
    pub async fn users_page(&self, page: &Page) -> Result<UsersResponse, ClientError> {
        let limit = page.limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(after) = &page.after {
            query.push(("after", after.as_str()));
        }
        if let Some(limit) = &limit {
            query.push(("limit", limit.as_str()));
        }
        self.get("/v1/users", &query).await
    }

    pub async fn add_user(&self, request: &AddUserRequest) -> Result<UserResponse, ClientError> {
        self.post("/v1/users/add", request).await
    }

    pub async fn passwd(&self, request: &PasswdRequest) -> Result<UserResponse, ClientError> {
        self.post("/v1/users/passwd", request).await
    }

    pub async fn remove_user(&self, request: &UserRequest) -> Result<UserResponse, ClientError> {
        self.post("/v1/users/remove", request).await
    }

    /// Ends every session of a user.
    pub async fn revoke(&self, request: &UserRequest) -> Result<UserResponse, ClientError> {
        self.post("/v1/users/revoke", request).await
    }

    /// A new S3 access key for the caller (or, for an admin, `user`); the
    /// answer holds the secret, shown this once.
    pub async fn create_key(&self, user: Option<&str>) -> Result<KeyCreated, ClientError> {
        self.post(
            "/v1/keys/create",
            &KeyCreateRequest {
                user: user.map(str::to_string),
            },
        )
        .await
    }

    /// The caller's access keys; `user`'s, or with `all` everyone's, for admins.
    pub async fn keys(&self, user: Option<&str>, all: bool) -> Result<KeysResponse, ClientError> {
        let mut query = Vec::new();
        if let Some(user) = user {
            query.push(("user", user));
        }
        if all {
            query.push(("all", "true"));
        }
        self.get("/v1/keys", &query).await
    }

    pub async fn remove_key(&self, id: &str) -> Result<KeyInfo, ClientError> {
        self.post(
            "/v1/keys/remove",
            &KeyRemoveRequest {
                access_key_id: id.to_string(),
            },
        )
        .await
    }

    /// A key's secret (cluster processes only: the S3 gateway).
    pub async fn key_secret(&self, id: &str) -> Result<KeySecret, ClientError> {
        self.get("/v1/keys/secret", &[("id", id)]).await
    }

    /// Adds a metadata member (it catches up, then votes).
    pub async fn add_member(
        &self,
        request: &AddMemberRequest,
    ) -> Result<MembersResponse, ClientError> {
        let call = Call::post("/v1/meta/members/add", request, ADMIN_ATTEMPT_TIMEOUT);
        self.call(call).await
    }

    pub async fn remove_member(
        &self,
        request: &RemoveMemberRequest,
    ) -> Result<MembersResponse, ClientError> {
        let call = Call::post("/v1/meta/members/remove", request, ADMIN_ATTEMPT_TIMEOUT);
        self.call(call).await
    }

    /// Snapshots the leader's state and purges the log it covers.
    pub async fn snapshot(&self) -> Result<SnapshotResponse, ClientError> {
        let call = Call::post("/v1/meta/snapshot", &(), ADMIN_ATTEMPT_TIMEOUT);
        self.call(call).await
    }

    async fn get<T: DeserializeOwned, V: AsRef<str>>(
        &self,
        route: &str,
        query: &[(&str, V)],
    ) -> Result<T, ClientError> {
        let query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_ref().to_string()))
            .collect();
        self.call(Call {
            route: route.to_string(),
            query,
            body: None,
            attempt_timeout: ATTEMPT_TIMEOUT,
        })
        .await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Call::post(route, body, ATTEMPT_TIMEOUT)).await
    }

    /// Makes one logical call: attempts on members until one answers for
    /// the leader or the failover timeout passes (see the module comment).
    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, ClientError> {
        // One id for every attempt of this call: the state machine applies
        // it once however many attempts reach a leader.
        let request_id = call
            .body
            .is_some()
            .then(|| format!("{:032x}", uuid::Uuid::new_v4().as_u128()));
        let started = Instant::now();
        let deadline = started + self.failover_timeout;
        let mut backoff = BACKOFF_MIN;
        // (member, what went wrong, whether it answered at all)
        let mut tried: Vec<(String, String, bool)> = Vec::new();
        let mut hops = 0;
        let mut answered_any = false;
        loop {
            let target = self.addr();
            let outcome = self.attempt(&call, &target, request_id.as_deref()).await;
            let (problem, answered) = match outcome {
                Attempt::Done(status, body) => {
                    let server = format!("metadata service at {target}");
                    return decode_body(status, &body, &server);
                }
                // Members whose views of the leader disagree (an election
                // just ended) may send the call around: a few hops at once,
                // then with pauses.
                Attempt::Redirect(leader) if leader != target => {
                    self.set_target(leader.clone());
                    hops += 1;
                    if hops <= MAX_FREE_HOPS {
                        continue;
                    }
                    (format!("redirected to {leader}"), true)
                }
                // A member that names itself as leader but is not (yet).
                Attempt::Redirect(_) => ("redirected to itself".to_string(), true),
                Attempt::NoLeader(message) => {
                    self.rotate(&target);
                    (message, true)
                }
                Attempt::Unreachable(reason) => {
                    self.rotate(&target);
                    (reason, false)
                }
            };
            answered_any |= answered;
            tried.retain(|(addr, _, _)| addr != &target);
            tried.push((target, problem, answered));
            let nobody_answers = !answered_any && started.elapsed() >= NOBODY_ANSWERS_TIMEOUT;
            if nobody_answers || Instant::now() + backoff >= deadline {
                return Err(self.gave_up(tried));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn attempt(&self, call: &Call, target: &str, request_id: Option<&str>) -> Attempt {
        let url = format!("{}{}", self.tls.base_url(target), call.route);
        let mut request = match &call.body {
            Some(body) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                // A cheap clone: a commit body may be tens of MiB.
                .body(body.clone()),
            None => self.http.get(url).query(&call.query),
        };
        request = request.timeout(call.attempt_timeout);
        if let Some(id) = request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        if self.stale_ok {
            request = request.header(STALE_OK_HEADER, "1");
        }
        if let Some(token) = &self.cluster_token {
            request = request.header(CLUSTER_TOKEN_HEADER, token);
        }
        if let Some(id) = &self.access_key {
            request = request.header(ACCESS_KEY_HEADER, id.as_ref());
        }
        if let Some(acting) = &self.acting {
            request = request.header(ACT_AS_HEADER, acting.as_ref());
        }
        if let Some(token) = &self.token {
            request = request.header(
                reqwest::header::AUTHORIZATION,
                format!("{BEARER_PREFIX}{token}"),
            );
        }
        let send = request.send();
        tokio::pin!(send);
        let sent = tokio::select! {
            sent = &mut send => sent,
            _ = tokio::time::sleep(PROBE_AFTER) => {
                if !self.answers_health(target).await {
                    return Attempt::Unreachable(format!(
                        "no answer within {} ms, and its /v1/health did not answer within {} ms either: \
                         the member is paused, hung or cut off",
                        PROBE_AFTER.as_millis(),
                        PROBE_TIMEOUT.as_millis()
                    ));
                }
                // Alive and busy (a write waiting for a majority): wait on.
                (&mut send).await
            }
        };
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::Unreachable(describe_tls(&e, &self.tls)),
        };
        let status = response.status();
        if status == reqwest::StatusCode::TEMPORARY_REDIRECT {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(authority_of);
            return match location {
                Some(leader) => Attempt::Redirect(leader),
                None => Attempt::NoLeader("redirect without a location".into()),
            };
        }
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Attempt::Unreachable(describe(&e)),
        };
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            // Not leading, or leading without a majority: try elsewhere.
            // Any other 503 is an answer.
            if let Ok(e) = serde_json::from_slice::<ApiError>(&body) {
                if matches!(e.code, ErrorCode::NotLeader | ErrorCode::Unavailable) {
                    return match e.leader {
                        Some(leader) => Attempt::Redirect(leader),
                        None => Attempt::NoLeader(e.message),
                    };
                }
            }
        }
        Attempt::Done(status, body)
    }

    /// Whether the member at `target` answers `/v1/health` in time.
    async fn answers_health(&self, target: &str) -> bool {
        let url = format!("{}/v1/health", self.tls.base_url(target));
        let probe = self.http.get(url).timeout(PROBE_TIMEOUT).send();
        matches!(probe.await, Ok(response) if response.status().is_success())
    }

    fn set_target(&self, addr: String) {
        *self.target.lock().expect("meta target lock") = addr;
    }

    /// After `failed`, the next call goes to the member after it.
    fn rotate(&self, failed: &str) {
        let next = match self.members.iter().position(|m| m == failed) {
            Some(i) => self.members[(i + 1) % self.members.len()].clone(),
            None => self.members[0].clone(),
        };
        let mut target = self.target.lock().expect("meta target lock");
        if *target == failed {
            *target = next;
        }
    }

    /// The error after the failover timeout: nobody answered, or members
    /// answered but none could act as leader.
    fn gave_up(&self, tried: Vec<(String, String, bool)>) -> ClientError {
        let reason = tried
            .iter()
            .map(|(addr, problem, _)| format!("{addr}: {problem}"))
            .collect::<Vec<_>>()
            .join("; ");
        let addr = self.members.join(",");
        if tried.iter().any(|(_, _, answered)| *answered) {
            ClientError::NoLeader { addr, reason }
        } else {
            ClientError::MetaUnreachable { addr, reason }
        }
    }
}

/// One logical call, replayable on any member.
struct Call {
    route: String,
    query: Vec<(String, String)>,
    /// JSON body of a POST, shared by every attempt; `None` for a GET.
    body: Option<bytes::Bytes>,
    attempt_timeout: Duration,
}

impl Call {
    fn post<B: Serialize>(route: &str, body: &B, attempt_timeout: Duration) -> Call {
        Call {
            route: route.to_string(),
            query: Vec::new(),
            body: Some(
                serde_json::to_vec(body)
                    .expect("request bodies serialize to JSON")
                    .into(),
            ),
            attempt_timeout,
        }
    }
}

enum Attempt {
    /// A member answered for the leader (or for itself on a stale read).
    Done(reqwest::StatusCode, bytes::Bytes),
    /// Go to the leader at this address.
    Redirect(String),
    /// The member knows no leader, or cannot reach a majority.
    NoLeader(String),
    Unreachable(String),
}

/// The HTTP client of a `MetaClient`: redirects to the leader are
/// followed by hand, so that the client learns where the leader is.
fn http_client(tls: &ClientTls) -> reqwest::Client {
    tls.client_builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client builds with static settings")
}

const NO_QUERY: [(&str, &str); 0] = [];

/// The query of a page: the path, and `after` and `limit` when given.
fn page_query(path: &str, page: &Page) -> Vec<(&'static str, String)> {
    let mut query = vec![("path", path.to_string())];
    if let Some(after) = &page.after {
        query.push(("after", after.clone()));
    }
    if let Some(limit) = page.limit {
        query.push(("limit", limit.to_string()));
    }
    query
}

/// `host:port` of an `http(s)://host:port/...` URL.
fn authority_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then(|| authority.to_string())
}

/// Turns a response into the expected body, or into the server's `ApiError`.
pub(crate) async fn decode_response<T: DeserializeOwned>(
    response: reqwest::Response,
    server: &str,
) -> Result<T, ClientError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| ClientError::Protocol {
        server: server.to_string(),
        detail: format!("reading the answer failed: {}", describe(&e)),
    })?;
    decode_body(status, &body, server)
}

/// Turns a status and body into the expected value, or the server's `ApiError`.
fn decode_body<T: DeserializeOwned>(
    status: reqwest::StatusCode,
    body: &[u8],
    server: &str,
) -> Result<T, ClientError> {
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|e| ClientError::Protocol {
            server: server.to_string(),
            detail: e.to_string(),
        });
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => Err(ClientError::Api(e)),
        Err(_) => Err(ClientError::Protocol {
            server: server.to_string(),
            detail: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        }),
    }
}

/// [`describe`], with what to do when the failure looks like the two ends
/// disagree about TLS or the CA.
pub(crate) fn describe_tls(e: &reqwest::Error, tls: &ClientTls) -> String {
    let reason = describe(e);
    let lower = reason.to_ascii_lowercase();
    if lower.contains("unknownissuer") || lower.contains("certificate") {
        format!(
            "{reason} (the server's certificate is not signed by the CA given with --ca; give the cluster's CA, \
             as cairn dev --tls writes it to DIR/tls/ca.pem)"
        )
    } else if tls.is_tls()
        && (lower.contains("corrupt message") || lower.contains("invalidcontenttype"))
    {
        format!("{reason} (the server does not speak TLS; drop --ca, or start the servers with --tls-cert and --tls-key)")
    } else {
        reason
    }
}

/// A short reason for a transport error ("connection refused", "timed out").
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        innermost = s.to_string();
        source = s.source();
    }
    innermost
}
