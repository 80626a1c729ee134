//! The resume decision table with plain values, and the journal's file
//! discipline: round trip, permissions, no temporary left behind, corrupt
//! and foreign files refused (and kept, numbered), newer files left alone,
//! no symbolic link followed, one holder at a time.

use super::*;

const NOW: i64 = 1_700_000_000_000;
const GRACE: Duration = Duration::from_secs(300);

fn update() -> Update {
    Update {
        target_kpu: 4,
        from_kpu: 2,
        quoted_version_id: 7,
        reason: "high in ALARM".into(),
        started_ms: NOW - 30_000,
    }
}

fn app(status: AppStatus, version_id: u64) -> AppState {
    AppState {
        status,
        parallelism: 4,
        parallelism_per_kpu: 1,
        version_id,
        autoscaling_enabled: false,
        last_update_ms: None,
        identity: None,
        asked_kpu: None,
        rolled_back_from: None,
    }
}

fn in_flight() -> Vec<Phase> {
    vec![
        Phase::Sending { update: update() },
        Phase::Sent {
            update: update(),
            new_version_id: 8,
        },
        Phase::Updating {
            update: update(),
            observed_ms: NOW - 20_000,
            new_version_id: Some(8),
        },
    ]
}

#[test]
fn nothing_in_flight_evaluates() {
    let now = app(AppStatus::Running, 7);
    assert_eq!(resume(&Phase::Idle, &now, NOW, GRACE), Resume::Evaluate);
    let decided = Phase::Decided {
        target_kpu: 4,
        reason: "r".into(),
        at_ms: NOW - 1000,
    };
    assert_eq!(
        resume(&decided, &now, NOW, GRACE),
        Resume::Reevaluate { decided_kpu: 4 },
        "a decision never sent is decided again, not sent"
    );
}

#[test]
fn an_update_whose_version_did_not_move_never_happened() {
    for phase in in_flight() {
        for status in [AppStatus::Running, AppStatus::Updating, AppStatus::Ready] {
            // The quoted version, or an older one (a re-created application).
            for version in [7, 3] {
                assert_eq!(
                    resume(&phase, &app(status, version), NOW, GRACE),
                    Resume::NotApplied { update: update() },
                    "{phase:?} {status} v{version}"
                );
            }
        }
    }
}

#[test]
fn an_update_whose_version_moved_is_followed_never_resent() {
    for phase in in_flight() {
        assert_eq!(
            resume(&phase, &app(AppStatus::Updating, 8), NOW, GRACE),
            Resume::Follow { update: update() },
            "{phase:?}"
        );
        assert_eq!(
            resume(&phase, &app(AppStatus::Autoscaling, 9), NOW, GRACE),
            Resume::Follow { update: update() },
            "{phase:?}"
        );
        assert_eq!(
            resume(&phase, &app(AppStatus::Running, 8), NOW, GRACE),
            Resume::Finished { update: update() },
            "{phase:?}"
        );
        for status in [AppStatus::RolledBack, AppStatus::Ready, AppStatus::Deleting] {
            assert_eq!(
                resume(&phase, &app(status, 8), NOW, GRACE),
                Resume::Failed {
                    update: update(),
                    status
                },
                "{phase:?} {status}"
            );
        }
    }
}

#[test]
fn a_grace_period_continues_where_it_was() {
    let grace = |until_ms| Phase::Grace {
        kpu: 4,
        until_ms,
        after: None,
    };
    let now = app(AppStatus::Running, 8);
    assert_eq!(
        resume(&grace(NOW + 120_000), &now, NOW, GRACE),
        Resume::Grace {
            remaining: Duration::from_secs(120)
        }
    );
    assert_eq!(resume(&grace(NOW), &now, NOW, GRACE), Resume::Evaluate);
    assert_eq!(resume(&grace(NOW - 5), &now, NOW, GRACE), Resume::Evaluate);
    // A clock that jumped back does not stretch the wait past the period.
    assert_eq!(
        resume(&grace(NOW + 86_400_000), &now, NOW, GRACE),
        Resume::Grace { remaining: GRACE }
    );
}

fn record(phase: Phase) -> AppRecord {
    AppRecord {
        phase,
        last_rescale_ms: Some(NOW - 60_000),
        last_update_duration_secs: Some(120),
        kpu_limit: Some(KpuLimit {
            refused_kpu: 16,
            at_ms: NOW - 5000,
            usable_kpu: None,
        }),
        seen_version_id: Some(7),
        seen_identity: Some("a1b2".to_owned()),
        fight: Fight::default(),
        fresh_start: false,
        refused: None,
    }
}

/// A journal written before the identity was kept (or for a target that
/// does not say it) loads, with nothing to compare; one written now keeps
/// it.
#[test]
fn a_journal_without_the_identity_loads_and_a_new_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("state")).unwrap();
    let mut journal = store.journal("orders").unwrap();
    let old = r#"{"format": 1, "application": "orders", "seq": 3, "written_ms": 1700000000000,
        "record": {"phase": {"kind": "idle"}, "seen_version_id": 7}}"#;
    std::fs::write(journal.path(), old).unwrap();
    let file = journal.load().unwrap().expect("a record");
    assert_eq!(file.record.seen_identity, None);
    assert_eq!(file.record.seen_version_id, Some(7));

    journal.save(&record(Phase::Idle), NOW).unwrap();
    let text = std::fs::read_to_string(journal.path()).unwrap();
    assert!(text.contains("\"seen_identity\": \"a1b2\""), "{text}");
    let file = journal.load().unwrap().expect("a record");
    assert_eq!(file.record.seen_identity.as_deref(), Some("a1b2"));
}

#[test]
fn a_saved_record_loads_back_and_the_write_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("state")).unwrap();
    let mut journal = store.journal("orders").unwrap();
    assert_eq!(journal.load().unwrap(), None);
    for (i, phase) in in_flight().into_iter().enumerate() {
        journal
            .save(&record(phase.clone()), NOW + i as i64)
            .unwrap();
        let file = journal.load().unwrap().expect("a record");
        assert_eq!(file.record, record(phase));
        assert_eq!(file.seq, i as u64 + 1);
        assert_eq!(file.application, "orders");
        assert_eq!(file.format, FORMAT_VERSION);
    }
    let names: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("tmp")),
        "temporary left behind: {names:?}"
    );
    // The format is JSON a person can read: the phase is named.
    let text = std::fs::read_to_string(journal.path()).unwrap();
    assert!(text.contains("\"kind\": \"updating\""), "{text}");
    assert!(text.contains("\"quoted_version_id\": 7"), "{text}");
}

#[cfg(unix)]
#[test]
fn the_folder_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a/b/state");
    let store = StateStore::open(&state).unwrap();
    let mut journal = store.journal("orders").unwrap();
    journal.save(&record(Phase::Idle), NOW).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(journal.path()), 0o600);
    assert_eq!(mode(&state.join("orders.lock")), 0o600);
}

#[test]
fn a_corrupt_or_foreign_journal_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut journal = store.journal("orders").unwrap();
    for text in [
        &b"{\"format\": 1, \"applic"[..],
        b"\xff\xfe garbage",
        b"",
        b"{\"format\": 0, \"application\": \"orders\", \"seq\": 1, \"written_ms\": 0, \"record\": {\"phase\": {\"kind\": \"idle\"}}}",
        b"{\"format\": -1, \"application\": \"orders\"}",
        b"{\"format\": 1, \"application\": \"other\", \"seq\": 1, \"written_ms\": 0, \"record\": {\"phase\": {\"kind\": \"idle\"}}}",
        b"{\"format\": 1, \"application\": \"orders\", \"seq\": 1, \"written_ms\": 0, \"record\": {\"phase\": {\"kind\": \"teleporting\"}}}",
    ] {
        std::fs::write(journal.path(), text).unwrap();
        let error = journal.load().expect_err("refused");
        assert!(matches!(error, StateError::Corrupt { .. }), "{error:?}");
        assert!(error.to_string().contains("orders.json"), "{error}");
    }
    let aside = journal.set_aside().unwrap();
    assert!(aside.is_file());
    assert!(
        aside.to_string_lossy().ends_with("orders.json.corrupt.1"),
        "{}",
        aside.display()
    );
    assert_eq!(
        journal.load().unwrap(),
        None,
        "the corrupt file is set aside"
    );
}

#[test]
fn one_holder_per_application_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let first = store.journal("orders").unwrap();
    let error = store.journal("orders").expect_err("second holder refused");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
    // Other applications are independent.
    let _other = store.journal("payments").unwrap();
    drop(first);
    store.journal("orders").expect("free again once dropped");
}

#[test]
fn names_that_are_not_file_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    for name in ["", ".", "..", "a/b", "../x", "a\0b"] {
        assert!(
            matches!(store.journal(name), Err(StateError::BadName(_))),
            "{name:?}"
        );
    }
}

/// A journal as a newer agent might write it: a higher format number, and
/// a shape this agent does not know.
fn newer_journal(format: u64) -> String {
    format!(
        "{{\"format\": {format}, \"application\": \"orders\", \"records\": [{{\"kind\": \"warp\"}}]}}\n"
    )
}

#[test]
fn a_newer_journal_is_refused_by_name_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut journal = store.journal("orders").unwrap();
    for format in [u64::from(FORMAT_VERSION) + 1, 99, u64::from(u32::MAX) + 7] {
        let text = newer_journal(format);
        std::fs::write(journal.path(), &text).unwrap();
        let error = journal.load().expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("newer flinkscale")
                && message.contains(&format!("format {format}"))
                && message.contains(&format!("this agent reads {FORMAT_VERSION}"))
                && message.contains("upgrade the agent or remove the file")
                && message.contains("orders.json"),
            "{message}"
        );
        assert!(
            matches!(&error, StateError::Newer { format: f, path } if *f == format && path == journal.path()),
            "{error:?}"
        );
        assert_eq!(std::fs::read_to_string(journal.path()).unwrap(), text);
    }
}

#[test]
fn a_newer_journal_is_never_saved_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut journal = store.journal("orders").unwrap();
    let text = newer_journal(2);
    std::fs::write(journal.path(), &text).unwrap();
    assert!(journal.load().is_err());
    // A caller that goes on regardless, as if it had started with no state.
    let error = journal
        .save(&record(Phase::Idle), NOW)
        .expect_err("not saved over");
    assert!(
        matches!(error, StateError::Newer { format: 2, .. }),
        "{error:?}"
    );
    assert_eq!(std::fs::read_to_string(journal.path()).unwrap(), text);
}

#[test]
fn a_set_aside_journal_never_overwrites_an_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut journal = store.journal("orders").unwrap();
    // What an older agent set aside, and a first numbered copy.
    let legacy = dir.path().join("orders.json.corrupt");
    let first = dir.path().join("orders.json.corrupt.1");
    std::fs::write(&legacy, b"legacy evidence").unwrap();
    std::fs::write(&first, b"first evidence").unwrap();

    std::fs::write(journal.path(), b"second evidence").unwrap();
    let second = journal.set_aside().unwrap();
    assert_eq!(second, dir.path().join("orders.json.corrupt.2"));
    std::fs::write(journal.path(), b"third evidence").unwrap();
    let third = journal.set_aside().unwrap();
    assert_eq!(third, dir.path().join("orders.json.corrupt.3"));

    assert_eq!(std::fs::read(&legacy).unwrap(), b"legacy evidence");
    assert_eq!(std::fs::read(&first).unwrap(), b"first evidence");
    assert_eq!(std::fs::read(&second).unwrap(), b"second evidence");
    assert_eq!(std::fs::read(&third).unwrap(), b"third evidence");
    assert_eq!(journal.load().unwrap(), None, "the journal itself is gone");
}

/// A file outside the state folder that planted links point at.
#[cfg(unix)]
fn victim(outside: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let victim = outside.join("victim");
    std::fs::write(&victim, b"not the agent's").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    victim
}

#[cfg(unix)]
fn assert_untouched(victim: &Path) {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::read(victim).unwrap(), b"not the agent's");
    let mode = std::fs::metadata(victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "mode of {}", victim.display());
}

#[cfg(unix)]
#[test]
fn a_link_planted_at_the_temporary_path_is_not_written_through() {
    let outside = tempfile::tempdir().unwrap();
    let victim = victim(outside.path());
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut journal = store.journal("orders").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join(".orders.json.tmp")).unwrap();

    journal.save(&record(Phase::Idle), NOW).expect("saved");

    assert_untouched(&victim);
    assert_eq!(
        journal.load().unwrap().expect("a record").record,
        record(Phase::Idle)
    );
    assert!(
        !std::fs::symlink_metadata(journal.path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[cfg(unix)]
#[test]
fn a_link_planted_at_the_lock_path_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let victim = victim(outside.path());
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("orders.lock")).unwrap();
    let missing = outside.path().join("created-elsewhere");
    std::os::unix::fs::symlink(&missing, dir.path().join("payments.lock")).unwrap();

    for app in ["orders", "payments"] {
        let error = store
            .journal(app)
            .expect_err("a link is not the agent's lock");
        assert!(
            matches!(&error, StateError::Io { action: "open", .. })
                && error.to_string().contains(&format!("{app}.lock")),
            "{error:?}"
        );
    }
    assert_untouched(&victim);
    assert!(
        !missing.exists(),
        "a file was created outside the state folder"
    );
}

#[cfg(unix)]
#[test]
fn a_link_planted_at_the_journal_path_is_not_read() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut journal = store.journal("orders").unwrap();
    // A well-formed record elsewhere, claiming an update in flight.
    journal.save(&record(in_flight().remove(0)), NOW).unwrap();
    let elsewhere = outside.path().join("planted.json");
    std::fs::rename(journal.path(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, journal.path()).unwrap();

    let error = journal.load().expect_err("a link is not the journal");
    assert!(
        matches!(&error, StateError::Io { action: "read", .. }),
        "{error:?}"
    );
    // Saving replaces the link itself, never the file it points to.
    let planted = std::fs::read(&elsewhere).unwrap();
    journal.save(&record(Phase::Idle), NOW).unwrap();
    assert_eq!(std::fs::read(&elsewhere).unwrap(), planted);
    assert_eq!(
        journal.load().unwrap().expect("a record").record,
        record(Phase::Idle)
    );
}

#[test]
fn a_state_folder_removed_under_the_agent_is_created_again_and_locked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = StateStore::open(&state).unwrap();
    let mut journal = store.journal("orders").unwrap();
    journal.save(&record(Phase::Idle), NOW).unwrap();
    // An operator's `rm -rf` of the whole folder.
    std::fs::remove_dir_all(&state).unwrap();
    let sending = record(Phase::Sending { update: update() });
    journal
        .save(&sending, NOW + 1)
        .expect("the folder is created again");
    assert_eq!(journal.load().unwrap().expect("a record").record, sending);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    // The lock came back with it: a second agent on the folder is refused.
    let error = StateStore::open(&state)
        .unwrap()
        .journal("orders")
        .expect_err("a second holder is refused");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
}

#[test]
fn a_folder_replaced_under_the_agent_is_not_shared_with_a_second_agent() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = StateStore::open(&state).unwrap();
    let mut journal = store.journal("orders").unwrap();
    journal.save(&record(Phase::Idle), NOW).unwrap();
    // A volume mounted over the folder: an empty folder at the same path.
    std::fs::rename(&state, dir.path().join("old")).unwrap();
    std::fs::create_dir(&state).unwrap();
    // A second agent started on it meanwhile takes the new lock file ...
    let second = StateStore::open(&state).unwrap().journal("orders").unwrap();
    // ... so the first one must not write the journal the second one owns.
    let error = journal
        .save(&record(Phase::Sending { update: update() }), NOW + 1)
        .expect_err("the folder belongs to another agent now");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
    assert!(
        !state.join("orders.json").exists(),
        "nothing written into the other agent's folder"
    );
    // Once the other lets go, this agent locks the folder and goes on.
    drop(second);
    journal.save(&record(Phase::Idle), NOW + 2).unwrap();
    let error = StateStore::open(&state)
        .unwrap()
        .journal("orders")
        .expect_err("locked again by the first agent");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
}

/// A removal refused for a file that is not there (a read-only file
/// system answers EROFS before ENOENT; under a file, ENOTDIR) is nothing
/// stale: the write after it says what is wrong, instead of an error
/// about removing a file that never existed. One that is there and
/// cannot be removed is still an error.
#[test]
fn a_stale_file_that_is_not_there_needs_no_removal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_a_file = file.join(".app.json.tmp");
    assert!(
        std::fs::remove_file(&under_a_file)
            .is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
    );
    remove_stale(&under_a_file).expect("nothing there to remove");
    let a_folder = dir.path().join("folder");
    std::fs::create_dir(&a_folder).unwrap();
    remove_stale(&a_folder).expect_err("a folder is there and is not removed");
}

/// Makes a FIFO at `path`.
#[cfg(unix)]
fn fifo(path: &Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A FIFO planted at the journal's or the lock's path is refused at once
/// as no regular file: opened as it is, the read (or the lock's open for
/// writing) waited for a peer that never came, and the agent's start,
/// `status` and `explain` hung with it.
#[cfg(unix)]
#[test]
fn a_fifo_planted_in_the_state_folder_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    fifo(&dir.path().join("orders.lock"));
    let error = store
        .journal("orders")
        .expect_err("a FIFO is not the agent's lock");
    assert!(error.to_string().contains("not a regular file"), "{error}");

    let mut journal = store.journal("payments").unwrap();
    journal.save(&record(in_flight().remove(0)), NOW).unwrap();
    std::fs::remove_file(journal.path()).unwrap();
    fifo(journal.path());
    let error = journal.load().expect_err("a FIFO is not the journal");
    assert!(
        matches!(&error, StateError::Io { action: "read", .. })
            && error.to_string().contains("not a regular file"),
        "{error:?}"
    );
    let read = read_no_follow(journal.path()).expect_err("not read");
    assert_eq!(read.kind(), std::io::ErrorKind::InvalidInput);
}

/// A file system that cannot fsync a folder (EINVAL, or EBADF) does not
/// fail the save: failing it would fail every save, and no update would
/// ever go out. Any other error of the fsync still fails it, and so does
/// a "folder" that is none.
#[test]
fn a_folder_that_cannot_be_fsynced_does_not_fail_the_save() {
    let dir = Path::new("/state");
    let warned = std::sync::atomic::AtomicBool::new(false);
    for errno in [libc::EINVAL, libc::EBADF] {
        let result = Err(std::io::Error::from_raw_os_error(errno));
        assert!(folder_synced(result, dir, &warned).is_ok());
    }
    assert!(folder_synced(Ok(()), dir, &warned).is_ok());
    let failed = folder_synced(
        Err(std::io::Error::from_raw_os_error(libc::EIO)),
        dir,
        &warned,
    );
    assert_eq!(failed.map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    let real = tempfile::tempdir().unwrap();
    assert!(sync_folder(real.path()).is_ok());
    let file = real.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    assert_eq!(
        sync_folder(&file).map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENOTDIR))
    );
}

/// A resume request is taken once: the file removed, the name returned;
/// names without one are not.
#[test]
fn resume_requests_are_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    std::fs::write(resume_request_path(dir.path(), "orders"), b"").unwrap();
    let taken = store.take_resume_requests(["orders", "payments"]);
    assert_eq!(taken.into_iter().collect::<Vec<_>>(), ["orders"]);
    assert!(!resume_request_path(dir.path(), "orders").exists());
    assert!(
        store
            .take_resume_requests(["orders", "payments"])
            .is_empty()
    );
}
