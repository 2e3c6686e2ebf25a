//! The servers srlm starts for a run, and how a request reaches its model.
//!
//! - [`ManagedServer`]: one server process srlm starts from a command template, and may stop
//!   and start again **on the same port** (its clients keep their URL). It serves one model,
//!   or, with the word `{lora}` in the template (llama.cpp), a base GGUF plus the LoRA
//!   adapters of the models in use: TSR's M0, M_i and M_f from one process holding the base
//!   once. `llama-server` reads adapter files only at start (`--lora FILE`; its
//!   `/lora-adapters` endpoint sets scales, it loads nothing), so a model whose adapter the
//!   running server does not hold is served by starting it again with the adapters of the
//!   models still in use plus the new one.
//! - [`ServerPool`]: a run's servers. `exclusive` keeps at most one running (a GPU that holds
//!   one model: the others are stopped and started again when next used); [`ServerPool::suspend`]
//!   stops them all (while DPO trains on the same accelerator).
//! - [`ServerRoute`]: what a batch of requests for one model does first — its server started if it is
//!   stopped (the others stopped when exclusive) — and the request's llama.cpp `lora` field:
//!   every adapter the server holds, at scale 1 for the model's own and 0 for the others (all
//!   0 for the base). Ids are read from the server's current list at each request, so routes
//!   made before a restart stay right; a route whose model was released is an error, never
//!   another model's answers.

use crate::client::{Client, LoraScale};
use crate::error::EngineError;
use crate::server::{free_port, has_lora_word, ServerProcess, ServerVars};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One server process srlm owns (see the module docs).
pub struct ManagedServer {
    template: String,
    vars: ServerVars,
    log: PathBuf,
    startup: Duration,
    port: u16,
    adapters: bool,
    process: Arc<Mutex<Option<ServerProcess>>>,
    /// `slots[id]`: the key of the adapter the running server loaded as `--lora` number `id`.
    slots: Mutex<Vec<String>>,
    /// The adapters of the models acquired and not released, in acquisition order.
    wanted: Mutex<Vec<(String, PathBuf)>>,
    starts: AtomicUsize,
}

impl std::fmt::Debug for ManagedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedServer")
            .field("template", &self.template)
            .field("port", &self.port)
            .finish()
    }
}

impl ManagedServer {
    /// A server for `template` with `vars` (their `lora` is ignored: adapters come from
    /// [`ServerPool::acquire`]), logging to `log`, on a loopback port picked now. Nothing
    /// starts until it is acquired.
    ///
    /// # Errors
    /// [`EngineError::Io`] when no port can be had.
    pub fn new(
        template: &str,
        vars: ServerVars,
        log: &Path,
        startup: Duration,
    ) -> Result<Self, EngineError> {
        Ok(ManagedServer {
            template: template.to_string(),
            vars: ServerVars {
                lora: Vec::new(),
                ..vars
            },
            log: log.to_path_buf(),
            startup,
            port: free_port()?,
            adapters: has_lora_word(template),
            process: Arc::new(Mutex::new(None)),
            slots: Mutex::new(Vec::new()),
            wanted: Mutex::new(Vec::new()),
            starts: AtomicUsize::new(0),
        })
    }

    /// Whether its template has `{lora}` (it serves LoRA adapters of its base).
    pub fn serves_adapters(&self) -> bool {
        self.adapters
    }

    fn running(&self) -> bool {
        self.process
            .lock()
            .expect("server")
            .as_ref()
            .is_some_and(|p| p.exited().is_none())
    }

    fn holds(&self, key: &str) -> bool {
        self.slots
            .lock()
            .expect("adapter slots")
            .iter()
            .any(|k| k == key)
    }

    fn wants(&self, key: &str) -> bool {
        self.wanted
            .lock()
            .expect("wanted adapters")
            .iter()
            .any(|(k, _)| k == key)
    }

    /// Starts the process (stopping a running one) with the adapters in use.
    fn start(&self) -> Result<(), EngineError> {
        self.stop();
        let adapters = self.wanted.lock().expect("wanted adapters").clone();
        let vars = ServerVars {
            lora: adapters.iter().map(|(_, f)| f.clone()).collect(),
            ..self.vars.clone()
        };
        let p = ServerProcess::start_on(&self.template, &vars, &self.log, self.startup, self.port)?;
        tracing::info!("started `{}` (log {})", p.command(), self.log.display());
        *self.slots.lock().expect("adapter slots") = adapters.into_iter().map(|(k, _)| k).collect();
        *self.process.lock().expect("server") = Some(p);
        self.starts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops the process if it runs (it starts again when next used). Idempotent.
    pub fn stop(&self) {
        let old = self.process.lock().expect("server").take();
        if let Some(p) = old {
            p.stop();
        }
        self.slots.lock().expect("adapter slots").clear();
    }

    /// A client of the server (same URL across restarts) that reports the running process's
    /// death instead of a connection error.
    pub fn client(&self, timeout: Duration, retries: u32, concurrency: usize) -> Client {
        let process = self.process.clone();
        Client::new(&self.base_url(), timeout, retries, concurrency).watching(Arc::new(move || {
            process
                .lock()
                .expect("server")
                .as_ref()
                .and_then(ServerProcess::exited)
        }))
    }

    /// The OpenAI API base (`http://127.0.0.1:<port>/v1`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// How many times its process was started.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::Relaxed)
    }

    /// The running process's id, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.process
            .lock()
            .expect("server")
            .as_ref()
            .map(ServerProcess::pid)
    }
}

impl Drop for ManagedServer {
    /// Stops the process, also while clients made by [`ManagedServer::client`] live on.
    fn drop(&mut self) {
        let process = self.process.lock().map(|mut p| p.take());
        if let Ok(Some(p)) = process {
            p.stop();
        }
    }
}

/// A run's servers (see the module docs).
#[derive(Debug)]
pub struct ServerPool {
    exclusive: bool,
    servers: Mutex<Vec<Arc<ManagedServer>>>,
}

impl ServerPool {
    /// An empty pool; `exclusive`: at most one server runs at a time.
    pub fn new(exclusive: bool) -> Arc<Self> {
        Arc::new(ServerPool {
            exclusive,
            servers: Mutex::new(Vec::new()),
        })
    }

    /// Adds a server (not started).
    pub fn add(&self, server: ManagedServer) -> Arc<ManagedServer> {
        let s = Arc::new(server);
        self.servers.lock().expect("servers").push(s.clone());
        s
    }

    /// Serves a model on `server` from now on: its own model or base (`adapter = None`), or
    /// the base plus the GGUF adapter `file` under `key`. Starts the server (or starts it
    /// again with the adapters in use when it does not hold this one).
    ///
    /// # Errors
    /// [`EngineError::Config`] for an adapter on a server without `{lora}`; every error of
    /// [`ServerProcess::start_on`].
    pub fn acquire(
        self: &Arc<Self>,
        server: &Arc<ManagedServer>,
        adapter: Option<(&str, &Path)>,
    ) -> Result<ServerRoute, EngineError> {
        if let Some((key, file)) = adapter {
            if !server.adapters {
                return Err(EngineError::Config(format!(
                    "engine.command {:?}: serving a LoRA adapter needs the word {{lora}}",
                    server.template
                )));
            }
            if !server.wants(key) {
                server
                    .wanted
                    .lock()
                    .expect("wanted adapters")
                    .push((key.to_string(), file.to_path_buf()));
            }
        }
        let route = ServerRoute {
            pool: self.clone(),
            server: server.clone(),
            adapter: adapter.map(|(key, _)| key.to_string()),
        };
        self.activate(&route)?;
        Ok(route)
    }

    /// Makes `route`'s server able to answer: the others stopped when exclusive, it started
    /// if it is not running or lacks the route's adapter.
    fn activate(&self, route: &ServerRoute) -> Result<(), EngineError> {
        let server = &route.server;
        if let Some(key) = &route.adapter {
            if !server.wants(key) {
                return Err(EngineError::Config(format!(
                    "the LoRA adapter of model {key} is no longer loaded on the server (the model was released)"
                )));
            }
        }
        if self.exclusive {
            for other in self.servers.lock().expect("servers").iter() {
                if !Arc::ptr_eq(other, server) {
                    other.stop();
                }
            }
        }
        let ready = server.running() && route.adapter.as_deref().is_none_or(|k| server.holds(k));
        if !ready {
            server.start()?;
        }
        Ok(())
    }

    /// The model under `key` is no longer used on `server`: its adapter is left out at the
    /// server's next start.
    pub fn release(&self, server: &ManagedServer, key: &str) {
        server
            .wanted
            .lock()
            .expect("wanted adapters")
            .retain(|(k, _)| k != key);
    }

    /// Stops `server` and forgets it (its model was released).
    pub fn remove(&self, server: &Arc<ManagedServer>) {
        server.stop();
        self.servers
            .lock()
            .expect("servers")
            .retain(|s| !Arc::ptr_eq(s, server));
    }

    /// Stops every server; each starts again on its port when next used.
    pub fn suspend(&self) {
        for s in self.servers.lock().expect("servers").iter() {
            s.stop();
        }
    }

    /// Servers running now.
    pub fn running(&self) -> usize {
        self.servers
            .lock()
            .expect("servers")
            .iter()
            .filter(|s| s.running())
            .count()
    }
}

/// How requests for one model reach it (see the module docs).
#[derive(Debug, Clone)]
pub struct ServerRoute {
    pool: Arc<ServerPool>,
    server: Arc<ManagedServer>,
    /// The model's adapter key; `None` for the server's own model (its base).
    adapter: Option<String>,
}

impl ServerRoute {
    /// Called before each batch of requests: the server running (started again on its port if it was
    /// stopped; the others stopped when the pool is exclusive), and the request's `lora`
    /// field (`None` on a server without `{lora}`).
    ///
    /// # Errors
    /// [`EngineError::Config`] when the model was released; every error of starting it.
    pub fn prepare(&self) -> Result<Option<Vec<LoraScale>>, EngineError> {
        self.pool.activate(self)?;
        if !self.server.adapters {
            return Ok(None);
        }
        Ok(Some(scales(
            &self.server.slots.lock().expect("adapter slots"),
            self.adapter.as_deref(),
        )))
    }
}

/// Every adapter in `slots`, at scale 1 for `adapter` and 0 for the others.
fn scales(slots: &[String], adapter: Option<&str>) -> Vec<LoraScale> {
    slots
        .iter()
        .enumerate()
        .map(|(id, key)| LoraScale {
            id,
            scale: if Some(key.as_str()) == adapter {
                1.0
            } else {
                0.0
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: Vec<LoraScale>) -> Vec<(usize, f64)> {
        v.iter().map(|s| (s.id, s.scale)).collect()
    }

    #[test]
    fn a_route_lists_every_adapter_and_turns_on_its_own() {
        let slots = ["m1".to_string(), "mf".to_string()];
        assert_eq!(pairs(scales(&slots, Some("mf"))), [(0, 0.0), (1, 1.0)]);
        assert_eq!(pairs(scales(&slots, Some("m1"))), [(0, 1.0), (1, 0.0)]);
        assert_eq!(pairs(scales(&slots, None)), [(0, 0.0), (1, 0.0)]);
        assert_eq!(pairs(scales(&[], None)), []);
    }

    fn server(template: &str) -> Arc<ManagedServer> {
        Arc::new(
            ManagedServer::new(
                template,
                ServerVars::default(),
                Path::new("/nonexistent/log"),
                Duration::from_secs(1),
            )
            .unwrap(),
        )
    }

    #[test]
    fn an_adapter_needs_lora_in_the_template_and_a_released_one_is_refused() {
        let pool = ServerPool::new(false);
        let plain = server("llama-server -m {gguf} --port {port}");
        let e = pool
            .acquire(&plain, Some(("m1", Path::new("/m1.gguf"))))
            .unwrap_err();
        assert!(e.to_string().contains("{lora}"), "{e}");
        let with = server("llama-server -m {gguf} {lora} --port {port}");
        assert!(with.serves_adapters() && !plain.serves_adapters());
        let route = ServerRoute {
            pool: pool.clone(),
            server: with,
            adapter: Some("gone".into()),
        };
        let e = route.prepare().unwrap_err();
        assert!(e.to_string().contains("no longer loaded"), "{e}");
    }
}
