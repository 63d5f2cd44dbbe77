//! Test harness: the milter served in-process on 127.0.0.1:0 with its own file store, the
//! same `serve()` the daemon runs.
#![allow(dead_code)]

use cjsm_milter::config::Config;
use cjsm_milter::listen::{self, ListenAddr};
use cjsm_milter::milter::{self, Shared};
use cjsm_milter::pipeline::Engine;
use cjsm_milter::store::{self, User, UserState};
use indymilter_test::TestConnection;
use std::net::SocketAddr;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestMilter {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestMilter {
    /// Starts a milter on the given config text (the store section is added here).
    pub async fn start(config_text: &str) -> TestMilter {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{config_text}\n[store]\nbackend = \"file\"\npath = \"{}\"\n",
            dir.path().join("store").display()
        );
        let config = Config::parse(&text).unwrap();
        let store = store::open(&config.store, store::Access::ReadWrite).unwrap();
        let engine = Engine::new(config, store).unwrap();
        let shared = Shared::new(engine);
        let (listener, local) = listen::bind(
            &ListenAddr::Inet("127.0.0.1:0".parse().unwrap()),
            None,
            None,
        )
        .await
        .unwrap();
        let ListenAddr::Inet(addr) = local else {
            unreachable!()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(milter::serve(listener, shared.clone(), async move {
            let _ = rx.await;
        }));
        TestMilter {
            addr,
            dir,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn add_user(&self, address: &str, state: UserState) {
        let store = self.shared.current().store.clone();
        store
            .add_user(User {
                address: address.into(),
                org: "test-org".into(),
                first_name: "Test".into(),
                last_name: "User".into(),
                state: UserState::Active,
                created: 0,
                updated: 0,
            })
            .await
            .unwrap();
        if state != UserState::Active {
            store.set_user_state(address, state, 1).await.unwrap();
        }
    }

    pub async fn connect(&self) -> TestConnection {
        TestConnection::open(self.addr).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}
