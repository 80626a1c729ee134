use super::*;
use crate::model::{AlarmState, AlarmStatus, Decision, Signal};

fn evaluated(app: &str, at_ms: i64, action: Action, dry_run: bool) -> Event {
    Event::Evaluated {
        application: app.to_owned(),
        at_ms,
        kpu: 2,
        latest: vec![("lag".to_owned(), Some(1500.0)), ("cpu".to_owned(), None)],
        alarms: vec![AlarmStatus {
            name: "scale_out".to_owned(),
            state: AlarmState::Alarm,
            since_ms: at_ms - 120_000,
        }],
        signals: vec![Signal {
            name: "backlog_secs".to_owned(),
            value: 42.5,
        }],
        policy: "step 0.2.0".to_owned(),
        decision: Decision {
            action,
            reason: format!("evaluation at {at_ms}"),
            next_evaluation_secs: None,
        },
        dry_run,
    }
}

/// An empty folder of the test's own (removed when it ends).
fn temp_dir(name: &str) -> crate::scratch::Scratch {
    crate::scratch::scratch(&format!("history-{name}"))
}

/// A writer that is behind (its disk hung: here, a queue nobody reads)
/// costs the controllers nothing: past the bound, events are dropped and
/// counted, and `record` returns at once.
#[test]
fn a_history_whose_writer_is_behind_drops_events_and_never_blocks() {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let history = History {
        tx,
        dropped: Arc::default(),
    };
    let copy = history.clone();
    for at_ms in 0..5 {
        copy.record(&evaluated("app", at_ms, Action::Hold, false));
    }
    assert_eq!(history.dropped(), 3);
    assert_eq!(rx.try_iter().count(), 2);
    // Room again: taken again.
    history.record(&evaluated("app", 5, Action::Hold, false));
    assert_eq!(rx.try_iter().count(), 1);
    assert_eq!(history.dropped(), 3);
}

/// Sends `events` through a real writer thread and waits for it.
fn write(dir: &Path, bound: usize, events: impl IntoIterator<Item = Event>) {
    let (history, writer) = spawn(dir.to_path_buf(), bound).expect("the history starts");
    for event in events {
        history.record(&event);
    }
    drop(history);
    writer.finish();
}

/// A line whose bytes are not UTF-8 is skipped like any damaged line:
/// the others still read, and the next write keeps them.
#[test]
fn a_line_that_is_not_utf8_spoils_only_itself() {
    let dir = temp_dir("utf8");
    write(
        &dir,
        10,
        (0..3).map(|i| evaluated("app", i, Action::Hold, false)),
    );
    let file = dir.join("app.jsonl");
    let mut bytes = std::fs::read(&file).expect("the history file");
    bytes.extend_from_slice(b"{\"at_ms\": \xff\xfe}\n");
    std::fs::write(&file, bytes).expect("damaged");
    let entries = read(&dir, "app", None).expect("the history reads");
    assert_eq!(
        entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    write(&dir, 10, [evaluated("app", 3, Action::Hold, false)]);
    let entries = read(&dir, "app", None).expect("the history reads");
    assert_eq!(
        entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

#[test]
fn the_history_stays_bounded_and_keeps_the_newest() {
    let dir = temp_dir("bound");
    for round in 0..3 {
        write(
            &dir,
            10,
            (0..17).map(|i| evaluated("app", round * 100 + i, Action::Hold, false)),
        );
        let lines = std::fs::read_to_string(dir.join("app.jsonl"))
            .expect("the history file")
            .lines()
            .count();
        assert!(
            lines <= 10,
            "round {round}: {lines} entries kept for a bound of 10"
        );
    }
    let entries = read(&dir, "app", None).expect("the history reads");
    assert!(entries.len() >= 9, "{} entries", entries.len());
    // Newest last, and the very newest is there.
    assert_eq!(entries.last().map(|e| e.at_ms), Some(216));
    assert!(entries.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    let last_three = read(&dir, "app", Some(3)).expect("the history reads");
    assert_eq!(
        last_three.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![214, 215, 216]
    );
}

#[test]
fn an_entry_keeps_the_inputs_and_what_became_of_the_update() {
    let dir = temp_dir("outcomes");
    write(
        &dir,
        DEFAULT_BOUND,
        [
            evaluated("app", 1_000, Action::ScaleTo(4), false),
            // Somebody else's update, noticed by the evaluation: no fate of
            // its decision, which goes out after it.
            failed(1_050, "foreign_update", "version id moved from 5 to 6"),
            Event::RescaleStarted {
                application: "app".to_owned(),
                at_ms: 1_100,
                from_kpu: 2,
                to_kpu: 4,
                version_id: 7,
            },
            evaluated("app", 2_000, Action::ScaleTo(8), false),
            Event::Failed {
                application: "app".to_owned(),
                at_ms: 2_100,
                class: "limit_exceeded".to_owned(),
                message: "LimitExceededException".to_owned(),
                plugin_class: None,
            },
            evaluated("app", 3_000, Action::ScaleTo(3), true),
            evaluated("app", 4_000, Action::Hold, false),
            // Its fate never arrives: the agent stops.
            evaluated("app", 5_000, Action::ScaleTo(5), false),
        ],
    );
    let entries = read(&dir, "app", None).expect("the history reads");
    let outcomes: Vec<String> = entries.iter().map(|e| e.outcome.to_string()).collect();
    assert_eq!(
        outcomes,
        [
            "UpdateApplication accepted to 4 KPU",
            "not scaled (limit_exceeded): LimitExceededException",
            "dry run: would have asked for 3 KPU",
            "held",
            "no answer: the agent stopped before UpdateApplication answered (the next start replaces this with what became of the update, unless it never took effect)",
        ]
    );
    let first = &entries[0];
    assert_eq!(first.policy, "step 0.2.0");
    assert_eq!(first.alarms[0].state, "ALARM");
    assert_eq!(first.metrics[0].value, Some(1500.0));
    assert_eq!(first.metrics[1].value, None);
    assert_eq!(first.signals[0].value, 42.5);
    let text = explain_text(&Explanation {
        application: "app".to_owned(),
        target: Words::Msf,
        entries: entries[..1].to_vec(),
        unreadable_lines: 0,
    });
    assert!(
        text.contains("alarms:   scale_out ALARM for 120 s"),
        "{text}"
    );
    assert!(text.contains("metrics:  lag 1500, cpu (no data)"), "{text}");
    assert!(text.contains("signals:  backlog_secs 42.5"), "{text}");
    assert!(
        text.contains("decision: scale to 4 KPU: evaluation at 1000"),
        "{text}"
    );
    assert!(
        text.contains("done:     UpdateApplication accepted to 4 KPU"),
        "{text}"
    );
}

/// Signals dropped as not finite at an evaluation are kept in its entry
/// and shown by `explain`; ones left by an evaluation that gave no entry
/// are not given to the next.
#[test]
fn an_entry_keeps_the_signals_dropped_at_its_evaluation() {
    let dir = temp_dir("dropped");
    let dropped = |at_ms: i64| Event::SignalsDropped {
        application: "app".to_owned(),
        at_ms,
        plugin: "lag 0.1.0".to_owned(),
        file: "plugins/lag.wasm".to_owned(),
        signals: vec![
            Signal {
                name: "backlog".to_owned(),
                value: f64::NAN,
            },
            Signal {
                name: "rate".to_owned(),
                value: f64::NEG_INFINITY,
            },
        ],
        first: at_ms == 1_000,
    };
    write(
        &dir,
        DEFAULT_BOUND,
        [
            dropped(1_000),
            evaluated("app", 1_000, Action::Hold, false),
            evaluated("app", 2_000, Action::Hold, false),
            // Its evaluation failed before it gave an entry.
            dropped(3_000),
            evaluated("app", 4_000, Action::Hold, false),
        ],
    );
    let entries = read(&dir, "app", None).expect("the history reads");
    let kept: Vec<Vec<(String, String, String)>> = entries
        .iter()
        .map(|e| {
            e.dropped_signals
                .iter()
                .map(|s| (s.name.clone(), s.value.clone(), s.plugin.clone()))
                .collect()
        })
        .collect();
    let at_1000 = vec![
        (
            "backlog".to_owned(),
            "NaN".to_owned(),
            "lag 0.1.0".to_owned(),
        ),
        ("rate".to_owned(), "-inf".to_owned(), "lag 0.1.0".to_owned()),
    ];
    assert_eq!(kept, [at_1000, vec![], vec![]]);
    let text = explain_text(&Explanation {
        application: "app".to_owned(),
        target: Words::Msf,
        entries: entries[..2].to_vec(),
        unreadable_lines: 0,
    });
    assert!(
        text.contains(
            "  signals:  backlog_secs 42.5\n  dropped:  backlog NaN from lag 0.1.0, \
             rate -inf from lag 0.1.0 (not finite numbers)\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("dropped:").count(), 1, "{text}");
    // Names read back from a tampered file reach the terminal escaped,
    // on one line: no escape sequence, no line of their own.
    let mut tampered = entries[0].clone();
    tampered.signals[0].name = "b\u{1b}[2J\nforged: line".to_owned();
    tampered.dropped_signals[0].name = "r\u{7}".to_owned();
    let text = explain_text(&Explanation {
        application: "app".to_owned(),
        target: Words::Msf,
        entries: vec![tampered],
        unreadable_lines: 0,
    });
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(!text.contains("\nforged: line"), "{text:?}");
    assert!(text.contains("b\\u{1b}[2J\\nforged: line 42.5"), "{text}");
    // An entry with none writes no field.
    let file = std::fs::read_to_string(dir.join("app.jsonl")).expect("the history file");
    assert_eq!(file.matches("dropped_signals").count(), 1, "{file}");
}

#[test]
fn explain_refuses_an_unknown_application_and_names_the_known_ones() {
    let dir = temp_dir("unknown");
    let configured = [("a".to_owned(), Words::Msf), ("b".to_owned(), Words::Msf)];
    let error = explain(&dir, &configured, "../etc", None).expect_err("not configured");
    assert_eq!(
        error.to_string(),
        "no application \"../etc\" in the configuration; configured: a, b"
    );
    // A configuration that names none (an invalid file, its journals
    // none either) says so rather than ending on an empty list.
    let error = explain(&dir, &[], "orders", None).expect_err("nothing configured");
    assert_eq!(
        error.to_string(),
        "no application \"orders\" in the configuration; configured: none"
    );
}

/// Lines `explain` cannot read (damaged, or from a newer flinkscale whose
/// entries this one does not know) are counted and said, not passed off
/// as "the history is empty".
#[test]
fn explain_says_how_many_lines_it_could_not_read() {
    let state = temp_dir("unreadable");
    let history = dir(&state);
    let configured = [("app".to_owned(), Words::Msf)];
    write(&history, 10, [evaluated("app", 1, Action::Hold, false)]);
    let file = history.join("app.jsonl");
    let mut text = std::fs::read_to_string(&file).expect("the history file");
    let newer = text
        .lines()
        .next()
        .expect("one entry")
        .replace("\"kind\":\"held\"", "\"kind\":\"something_newer\"");
    assert!(newer.contains("something_newer"), "{newer}");
    text.push_str(&format!("{newer}\n{{\"at_ms\": \n\n"));
    std::fs::write(&file, &text).expect("damaged");
    let explanation = explain(&state, &configured, "app", None).expect("the history reads");
    assert_eq!(explanation.entries.len(), 1);
    assert_eq!(explanation.unreadable_lines, 2);
    assert!(
        explain_text(&explanation).ends_with(
            "\nnote: 2 lines of the history could not be read (damaged, or written by a \
             newer flinkscale) and are left out\n"
        ),
        "{}",
        explain_text(&explanation)
    );
    // Only such lines: no decision could be read, not "empty".
    std::fs::write(&file, format!("{newer}\n")).expect("replaced");
    let explanation = explain(&state, &configured, "app", None).expect("the history reads");
    assert_eq!(
        explain_text(&explanation),
        "application \"app\": no decision could be read: 1 line of the history could not be \
         read (damaged, or written by a newer flinkscale) and is left out\n"
    );
    let json = serde_json::to_value(&explanation).expect("JSON");
    assert_eq!(json["unreadable_lines"], 1, "{json}");
}

/// `status` says when lines newer than the last entry it shows could not
/// be read, and when no entry could (it said "the history is empty", or
/// showed an older entry as the last with no word), and names a
/// quarantine or failure record it cannot read (shown as none).
#[test]
fn status_says_what_it_could_not_read() {
    let state = temp_dir("status-unreadable");
    let history = dir(&state);
    let configured = [("app".to_owned(), Words::Msf)];
    write(&history, 10, [evaluated("app", 1, Action::Hold, false)]);
    let file = history.join("app.jsonl");
    let mut text = std::fs::read_to_string(&file).expect("the history file");
    text.push_str("{\"at_ms\": \n");
    std::fs::write(&file, &text).expect("damaged");
    std::fs::write(history.join("app.quarantine.json"), "[{").expect("damaged");
    let now = status(&state, &configured, 10_000);
    let app = &now.applications[0];
    assert!(app.last.is_some(), "{app:?}");
    assert_eq!(app.history_unreadable_lines, 1);
    assert_eq!(app.unreadable.len(), 1, "{app:?}");
    let said = status_text(&now);
    assert!(
        said.contains(
            "  history:    1 line could not be read (damaged, or written by a newer flinkscale) \
             and is left out: `last` is the newest entry that could\n"
        ),
        "{said}"
    );
    assert!(
        said.contains("  unreadable: ") && said.contains("app.quarantine.json"),
        "{said}"
    );
    let json = serde_json::to_value(&now).expect("JSON");
    assert_eq!(
        json["applications"][0]["history_unreadable_lines"], 1,
        "{json}"
    );
    // Only damaged lines: not "empty".
    std::fs::write(&file, "{\"at_ms\": \n{\n").expect("replaced");
    let said = status_text(&status(&state, &configured, 10_000));
    assert!(!said.contains("the history is empty"), "{said}");
    assert!(
        said.contains("  history:    2 lines could not be read (damaged, or written by a newer flinkscale) and are left out\n"),
        "{said}"
    );
}

#[test]
fn status_without_any_file_says_the_history_is_empty() {
    let dir = temp_dir("empty");
    let status = status(&dir, &[("app".to_owned(), Words::Msf)], 10_000);
    assert_eq!(status.applications[0].phase, "none");
    assert_eq!(status.applications[0].last, None);
    assert!(status_text(&status).contains("no decision recorded yet (the history is empty)"));
}

/// A hold that asked to be evaluated later (lazy polling) says so in
/// `status` and `explain`, so that a long quiet after it reads as asked
/// for, not as a controller that stopped; a scale-out asks nothing.
#[test]
fn a_hold_that_asked_for_a_later_evaluation_says_when() {
    let dir = temp_dir("lazy");
    let mut lazy = evaluated("app", 10_000, Action::Hold, false);
    if let Event::Evaluated { decision, .. } = &mut lazy {
        decision.next_evaluation_secs = Some(840);
    }
    let mut scale = evaluated("other", 10_000, Action::ScaleTo(4), true);
    if let Event::Evaluated { decision, .. } = &mut scale {
        decision.next_evaluation_secs = Some(840);
    }
    write(&super::dir(&dir), 10, [lazy, scale]);
    let apps = [
        ("app".to_owned(), Words::Msf),
        ("other".to_owned(), Words::Msf),
    ];
    let text = status_text(&status(&dir, &apps, 70_000));
    assert!(
        text.contains(
            "  last:       hold 60 s ago: evaluation at 10000; held; next evaluation asked for 840 s after it\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("next evaluation asked").count(), 1, "{text}");
    let explained = explain_text(&explain(&dir, &apps, "app", None).expect("explains"));
    assert!(
        explained.contains(
            "  decision: hold: evaluation at 10000; next evaluation asked for 840 s after it\n"
        ),
        "{explained}"
    );
}

#[test]
fn a_line_cut_short_by_a_crash_does_not_swallow_the_next() {
    let dir = temp_dir("torn");
    write(&dir, 10, [evaluated("app", 1, Action::Hold, false)]);
    let path = dir.join("app.jsonl");
    let mut text = std::fs::read_to_string(&path).expect("the history file");
    text.push_str("{\"at_ms\": 2, \"kp");
    std::fs::write(&path, text).expect("a torn line");
    write(&dir, 10, [evaluated("app", 3, Action::Hold, false)]);
    let kept: Vec<i64> = read(&dir, "app", None)
        .expect("the history reads")
        .iter()
        .map(|e| e.at_ms)
        .collect();
    assert_eq!(kept, [1, 3]);
}

fn quarantined(at_ms: i64) -> Event {
    Event::PluginQuarantined {
        application: "app".to_owned(),
        at_ms,
        plugin: "step 0.2.0".to_owned(),
        slot: "policy".to_owned(),
        class: crate::plugin::FailureClass::Timeout,
        failures: 3,
        until_ms: at_ms + 300_000,
    }
}

#[test]
fn status_shows_a_quarantine_until_the_plugin_recovers() {
    let state = temp_dir("quarantine");
    let history_dir = dir(&state);
    write(&history_dir, 10, [quarantined(1_000)]);
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 61_000);
    assert_eq!(
        now.applications[0].quarantine,
        [Quarantine {
            plugin: "step 0.2.0".to_owned(),
            slot: "policy".to_owned(),
            class: "timeout".to_owned(),
            failures: 3,
            at_ms: 1_000,
            until_ms: 301_000,
        }]
    );
    let text = status_text(&now);
    assert!(
        text.contains("quarantine: step 0.2.0 for another 240 s"),
        "{text}"
    );
    let recovered = Event::PluginRecovered {
        application: "app".to_owned(),
        at_ms: 400_000,
        plugin: "step 0.2.0".to_owned(),
        slot: "policy".to_owned(),
    };
    write(&history_dir, 10, [quarantined(1_000), recovered]);
    let later = status(&state, &[("app".to_owned(), Words::Msf)], 401_000);
    assert_eq!(later.applications[0].quarantine, [], "{later:?}");
}

/// A reload that put another policy in place of a quarantined one: the
/// new policy's first answer ends the quarantine `status` shows (it stayed
/// there, under the old policy's name, until the agent restarted); an
/// interpreter quarantined meanwhile stays.
#[test]
fn a_quarantine_ends_with_the_answer_of_the_plugin_a_reload_put_in_its_place() {
    let state = temp_dir("quarantine-replaced");
    let history_dir = dir(&state);
    let interpreter = Event::PluginQuarantined {
        application: "app".to_owned(),
        at_ms: 2_000,
        plugin: "lag 0.1.0".to_owned(),
        slot: "interpreter 1".to_owned(),
        class: crate::plugin::FailureClass::Trap,
        failures: 3,
        until_ms: 302_000,
    };
    let successor = Event::PluginRecovered {
        application: "app".to_owned(),
        at_ms: 60_000,
        plugin: "rate 0.3.0".to_owned(),
        slot: "policy".to_owned(),
    };
    write(
        &history_dir,
        10,
        [quarantined(1_000), interpreter, successor],
    );
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 61_000);
    let left: Vec<&str> = now.applications[0]
        .quarantine
        .iter()
        .map(|q| q.plugin.as_str())
        .collect();
    assert_eq!(left, ["lag 0.1.0"], "{now:?}");
}

#[test]
fn a_restarted_agent_forgets_the_quarantines_of_the_last() {
    let state = temp_dir("restart");
    let history_dir = dir(&state);
    write(&history_dir, 10, [quarantined(1_000)]);
    // Quarantines live in the controllers: a new agent calls the plugin
    // again, and its first event for the application says so.
    write(
        &history_dir,
        10,
        [evaluated("app", 2_000, Action::Hold, false)],
    );
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 3_000);
    assert_eq!(now.applications[0].quarantine, [], "{now:?}");
}

/// A journal the agent would refuse is named as such by `status`, in the
/// agent's words, not shown as an idle application: one written by a
/// newer agent (which `run` and `once` exit 78 on) and one of another
/// application (which the agent sets aside as corrupt).
#[test]
fn status_names_a_journal_the_agent_refuses() {
    let state = temp_dir("refused");
    std::fs::create_dir_all(&state).expect("a state folder");
    for (text, expected) in [
        (
            r#"{"format": 99, "application": "app", "seq": 1, "written_ms": 0, "record": {}}"#,
            "was written by a newer flinkscale (format 99, this agent reads 1)",
        ),
        (
            r#"{"format": 1, "application": "other", "seq": 1, "written_ms": 0,
                "record": {"phase": {"kind": "idle"}}}"#,
            "it belongs to application \"other\"",
        ),
    ] {
        std::fs::write(state.join("app.json"), text).expect("a journal");
        let status = status(&state, &[("app".to_owned(), Words::Msf)], 1_000);
        let app = &status.applications[0];
        assert!(
            app.journal_error
                .as_deref()
                .is_some_and(|e| e.contains(expected) && e.contains("app.json")),
            "{app:?}"
        );
        let text = status_text(&status);
        assert!(text.contains("journal:    unreadable: "), "{text}");
    }
}

/// A journal that is there but cannot be read gives phase `unreadable`,
/// not `none`, which says the agent never ran the application: status
/// showed `none` for a damaged journal. No journal at all is still `none`.
#[test]
fn status_says_a_journal_it_cannot_read_is_unreadable_not_none() {
    let state = temp_dir("journal-unreadable");
    std::fs::create_dir_all(&state).expect("a state folder");
    let configured = [("app".to_owned(), Words::Msf)];
    assert_eq!(
        status(&state, &configured, 1_000).applications[0].phase,
        "none"
    );
    std::fs::write(state.join("app.json"), "{\"format\": 1, \"rec").expect("a damaged journal");
    let now = status(&state, &configured, 1_000);
    let app = &now.applications[0];
    assert!(app.journal_error.is_some(), "{app:?}");
    assert_eq!(app.phase, "unreadable");
    let json = serde_json::to_value(&now).expect("JSON");
    assert_eq!(json["applications"][0]["phase"], "unreadable", "{json}");
    let text = status_text(&now);
    assert!(text.contains("  phase:      unreadable\n"), "{text}");
    assert!(text.contains("  journal:    unreadable: "), "{text}");
}

/// The journal and the history are files on disk: times no clock reaches
/// (edited by hand, or damaged) are shown, or named as the journal's
/// error, without overflowing `status`'s arithmetic.
#[test]
fn status_reads_times_no_clock_reaches_without_overflowing() {
    let state = temp_dir("far");
    let history_dir = dir(&state);
    write(
        &history_dir,
        10,
        [
            evaluated("app", i64::MIN + 200_000, Action::Hold, false),
            quarantined(i64::MIN),
        ],
    );
    std::fs::write(
        state.join("app.json"),
        r#"{"format": 1, "application": "app", "seq": 1, "written_ms": 0,
            "record": {"phase": {"kind": "grace", "kpu": 2, "until_ms": -9223372036854775808}}}"#,
    )
    .expect("a journal");
    let now = 1_700_000_000_000;
    let status = status(&state, &[("app".to_owned(), Words::Msf)], now);
    let app = &status.applications[0];
    assert!(
        app.journal_error
            .as_deref()
            .is_some_and(|e| e.contains("phase.until_ms -9223372036854775808")),
        "{app:?}"
    );
    assert_eq!(app.grace_left_secs, None);
    assert_eq!(app.last_age_secs, Some(i64::MAX / 1000));
    let text = status_text(&status);
    assert!(
        text.contains("quarantine: step 0.2.0 (back-off over, retrying)"),
        "{text}"
    );
    let mut entries = read(&history_dir, "app", None).expect("the history reads");
    entries[0].at_ms = i64::MAX;
    entries[0].alarms[0].since_ms = i64::MIN;
    let text = explain_text(&Explanation {
        application: "app".to_owned(),
        target: Words::Msf,
        entries,
        unreadable_lines: 0,
    });
    assert!(
        text.contains(&format!("scale_out ALARM for {} s", i64::MAX / 1000)),
        "{text}"
    );
}

/// A held size whose end no clock reaches is refused like any such
/// time in the journal, not shown as held for ever.
#[test]
fn a_held_size_ending_at_no_time_is_a_journal_error() {
    let state = temp_dir("refused-far");
    std::fs::create_dir_all(&state).expect("a state folder");
    std::fs::write(
        state.join("app.json"),
        r#"{"format": 1, "application": "app", "seq": 1, "written_ms": 0,
            "record": {"phase": {"kind": "idle"},
                       "refused": {"kpu": 8, "until_ms": 9223372036854775807}}}"#,
    )
    .expect("a journal");
    let status = status(&state, &[("app".to_owned(), Words::Msf)], 0);
    let app = &status.applications[0];
    assert!(
        app.journal_error
            .as_deref()
            .is_some_and(|e| e.contains("refused.until_ms 9223372036854775807 is no time")),
        "{app:?}"
    );
}

/// The phases whose journal says more than their name: a decision not
/// sent, a start without a journal, another writer's update followed.
#[test]
fn status_says_what_a_decided_fresh_or_foreign_phase_holds() {
    let state = temp_dir("phases");
    std::fs::create_dir_all(&state).expect("a state folder");
    let apps = [("app".to_owned(), Words::Msf)];
    let phase_line = |record: &str| {
        std::fs::write(
            state.join("app.json"),
            format!(
                r#"{{"format": 1, "application": "app", "seq": 1, "written_ms": 0, "record": {record}}}"#
            ),
        )
        .expect("a journal");
        let now = status(&state, &apps, 1_000);
        assert_eq!(now.applications[0].journal_error, None, "{now:?}");
        let text = status_text(&now);
        text.lines()
            .find(|l| l.starts_with("  phase:"))
            .expect("a phase line")
            .to_owned()
    };
    assert_eq!(
        phase_line(
            r#"{"phase": {"kind": "decided", "target_kpu": 8, "reason": "r", "at_ms": 500}}"#
        ),
        "  phase:      decided (8 KPU decided, not sent: the application was not running; \
         the next evaluation decides again)"
    );
    assert_eq!(
        phase_line(r#"{"phase": {"kind": "idle"}, "fresh_start": true}"#),
        "  phase:      idle (started without a journal: the first read that finds the \
         application running holds a grace period if its last update is recent)"
    );
    assert!(
        phase_line(
            r#"{"phase": {"kind": "foreign", "version_id": 7, "since_ms": 500,
                "after": "grace period after another writer's update"}}"#
        )
        .ends_with("is busy; then the grace period after another writer's update)")
    );
}

#[test]
fn numbers_are_written_short_even_when_huge() {
    assert_eq!(super::number(42.5), "42.5");
    assert_eq!(super::number(-0.0001), "0");
    assert_eq!(super::number(1e308), "1e308");
    assert_eq!(super::number(-2.5e20), "-2.5e20");
    assert_eq!(super::number(123_456_789.0), "123456789");
}

/// A Flink job's `status` and `explain` speak Flink's words: parallelism,
/// the REST call that rescaled, the cluster's free slots as the ceiling;
/// the JSON names the target and keeps its fields.
#[test]
fn a_flink_jobs_status_and_explain_speak_flinks_words() {
    let state = temp_dir("flink-words");
    write(
        &dir(&state),
        10,
        [
            evaluated("orders", 1_000, Action::ScaleTo(4), false),
            Event::RescaleStarted {
                application: "orders".to_owned(),
                at_ms: 1_100,
                from_kpu: 2,
                to_kpu: 4,
                version_id: 6,
            },
        ],
    );
    std::fs::write(
        state.join("orders.json"),
        r#"{"format": 1, "application": "orders", "seq": 1, "written_ms": 1100,
            "record": {"phase": {"kind": "updating", "observed_ms": 2000,
                "update": {"target_kpu": 4, "from_kpu": 2, "quoted_version_id": 6,
                           "reason": "busy", "started_ms": 1000}},
                "kpu_limit": {"refused_kpu": 8, "at_ms": 500, "usable_kpu": 6}}}"#,
    )
    .expect("a journal");
    let configured = [("orders".to_owned(), Words::Flink)];
    let now = status(&state, &configured, 11_000);
    assert_eq!(now.applications[0].journal_error, None, "{now:?}");
    // No agent holds the journal: the update is where the last one left it.
    assert_eq!(
        status_text(&now),
        format!(
            "application \"orders\"\n\
         \x20 phase:      updating (to parallelism 4)\n\
         \x20 agent:      not acting (no process holds {}: no agent runs, or it runs in dry run); \
         the phase is where the last agent left it: nothing follows it until an agent starts, \
         which resumes from there\n\
         \x20 parallelism: 2\n\
         \x20 ceiling:    parallelism 6 (the cluster's free slots or the job's max parallelism refused parallelism 8); \
         until 1970-01-01T01:00:00.500Z at the latest, or once the job runs at parallelism 8\n\
         \x20 quarantine: none\n\
         \x20 last:       scale to parallelism 4 10 s ago: evaluation at 1000; \
         PUT /jobs/{{id}}/resource-requirements accepted to parallelism 4\n",
            state.join("orders.lock").display()
        )
    );
    let json = serde_json::to_value(&now).expect("serializes");
    assert_eq!(json["applications"][0]["target"], "flink");
    assert_eq!(json["applications"][0]["kpu"], 2);

    let explanation = explain(&state, &configured, "orders", None).expect("explains");
    assert_eq!(explanation.target, Words::Flink);
    let text = explain_text(&explanation);
    assert!(
        text.starts_with("1970-01-01T00:00:01Z  orders  parallelism 2  policy step 0.2.0\n"),
        "{text}"
    );
    assert!(
        text.contains("  decision: scale to parallelism 4: evaluation at 1000\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  done:     PUT /jobs/{id}/resource-requirements accepted to parallelism 4\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("KPU") && !text.contains("UpdateApplication"),
        "{text}"
    );

    // The same files for an MSF application read as they always did.
    let msf = status(&state, &[("orders".to_owned(), Words::Msf)], 11_000);
    let text = status_text(&msf);
    assert!(
        text.contains("  phase:      updating (to 4 KPU)\n"),
        "{text}"
    );
    assert!(text.contains("  kpu:        2\n"), "{text}");
    assert!(
        text.contains("  ceiling:    6 KPU (the application's KPU quota refused 8 KPU); until "),
        "{text}"
    );
    let fresh = status(&temp_dir("flink-words-empty"), &configured, 0);
    assert!(
        status_text(&fresh).contains("  ceiling:    none (never short of free slots)\n"),
        "{}",
        status_text(&fresh)
    );
}

#[test]
fn status_says_what_a_kpu_ceiling_refused_and_until_when_it_holds() {
    let state = temp_dir("ceiling");
    std::fs::create_dir_all(&state).expect("the state folder");
    let refused_at = 1_796_162_316_000;
    std::fs::write(
        state.join("app.json"),
        format!(
            r#"{{"format": 1, "application": "app", "seq": 1, "written_ms": {refused_at},
                "record": {{"phase": {{"kind": "idle"}},
                           "kpu_limit": {{"refused_kpu": 4, "at_ms": {refused_at}}}}}}}"#
        ),
    )
    .expect("a journal");
    let within = status(
        &state,
        &[("app".to_owned(), Words::Msf)],
        refused_at + 60_000,
    );
    let app = &within.applications[0];
    assert_eq!(app.journal_error, None, "{app:?}");
    assert_eq!(app.ceiling_kpu, Some(3));
    assert_eq!(app.ceiling_refused_kpu, Some(4));
    assert_eq!(app.ceiling_until_ms, Some(refused_at + 3_600_000));
    let text = status_text(&within);
    assert!(
        text.contains(
            "ceiling:    3 KPU (the application's KPU quota refused 4 KPU); until \
             2026-12-01T22:58:36Z at the latest, or once the application runs at 4 KPU"
        ),
        "{text}"
    );
    let after = status_text(&status(
        &state,
        &[("app".to_owned(), Words::Msf)],
        refused_at + 3_600_000,
    ));
    assert!(
        after.contains("3 KPU (the application's KPU quota refused 4 KPU); its hour is over"),
        "{after}"
    );
}

/// A rolled-back size held for the hour shows in `status` (text and
/// JSON) until the hour ends: decisions for it hold meanwhile, and
/// nothing else would say why.
#[test]
fn status_says_which_size_is_held_after_a_rollback_and_until_when() {
    let state = temp_dir("refused");
    std::fs::create_dir_all(&state).expect("the state folder");
    let at = 1_796_162_316_000;
    let until = at + 3_600_000;
    std::fs::write(
        state.join("app.json"),
        format!(
            r#"{{"format": 1, "application": "app", "seq": 1, "written_ms": {at},
                "record": {{"phase": {{"kind": "idle"}},
                           "refused": {{"kpu": 8, "until_ms": {until}, "rolled_back_to": 4}}}}}}"#
        ),
    )
    .expect("a journal");
    let apps = [("app".to_owned(), Words::Msf)];
    let within = status(&state, &apps, at + 600_000);
    let json = serde_json::to_value(&within).expect("serializes");
    assert_eq!(
        json["applications"][0]["refused"],
        serde_json::json!({"kpu": 8, "until_ms": until, "rolled_back_to": 4})
    );
    let text = status_text(&within);
    assert!(
        text.contains(
            "  held:       8 KPU or more not asked for until 2026-12-01T22:58:36Z (3000 s): \
             the update to it was rolled back to 4 KPU (it did not start)\n"
        ),
        "{text}"
    );
    let over = status(&state, &apps, until);
    assert_eq!(over.applications[0].refused, None, "{over:?}");
    assert!(!status_text(&over).contains("held:"), "{over:?}");
}

fn failed(at_ms: i64, class: &str, message: &str) -> Event {
    Event::Failed {
        application: "app".to_owned(),
        at_ms,
        class: class.to_owned(),
        plugin_class: None,
        message: message.to_owned(),
    }
}

#[test]
fn status_shows_the_failure_happening_now_until_an_evaluation_ends_it() {
    let state = temp_dir("failing");
    let history_dir = dir(&state);
    let apps = [("app".to_owned(), Words::Msf)];
    write(
        &history_dir,
        10,
        [
            evaluated("app", 1_000, Action::Hold, false),
            // Throttled, then refused three times in a row: the refusal
            // is what happens now, since its first time.
            failed(2_000, "throttled", "Rate exceeded"),
            failed(5_000, "permission", "AccessDenied: GetMetricData (1)"),
            failed(65_000, "permission", "AccessDenied: GetMetricData (2)"),
            failed(125_000, "permission", "AccessDenied: GetMetricData (3)"),
        ],
    );
    let now = status(&state, &apps, 130_000);
    assert_eq!(
        now.applications[0].failure,
        Some(CurrentFailure {
            class: "permission".to_owned(),
            message: "AccessDenied: GetMetricData (3)".to_owned(),
            since_ms: 5_000,
            last_ms: 125_000,
            count: 3,
        }),
        "{now:?}"
    );
    let text = status_text(&now);
    assert!(
        text.contains(
            "  failing:    permission since 1970-01-01T00:00:05Z (125 s, 3 times, last 5 s ago): AccessDenied: GetMetricData (3)\n"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&now).expect("the status is JSON");
    assert_eq!(json["applications"][0]["failure"]["class"], "permission");
    assert_eq!(json["applications"][0]["failure"]["since_ms"], 5_000);

    // The next evaluation ends it; `status` no longer shows one.
    write(
        &history_dir,
        10,
        [
            failed(190_000, "permission", "AccessDenied"),
            evaluated("app", 200_000, Action::Hold, false),
        ],
    );
    let later = status(&state, &apps, 201_000);
    assert_eq!(later.applications[0].failure, None, "{later:?}");
    assert!(!status_text(&later).contains("failing:"));
    assert!(!history_dir.join("app.failure.json").exists());

    // A restarted agent's first word on the application ends the last
    // agent's failure too, unless it is that failure again.
    write(
        &history_dir,
        10,
        [failed(300_000, "throttled", "Rate exceeded")],
    );
    write(
        &history_dir,
        10,
        [Event::PluginRecovered {
            application: "app".to_owned(),
            at_ms: 400_000,
            plugin: "step 0.2.0".to_owned(),
            slot: "policy".to_owned(),
        }],
    );
    let restarted = status(&state, &apps, 401_000);
    assert_eq!(restarted.applications[0].failure, None, "{restarted:?}");
}

/// A role that may read but not update: every evaluation decides to
/// scale and its update is refused. The evaluations in between do not end
/// the refusal, which `status` shows since its first time; an evaluation
/// that holds ends it, as an accepted update would.
#[test]
fn a_refused_update_decided_again_at_each_evaluation_is_one_failure_in_a_row() {
    let state = temp_dir("update-refused");
    let history_dir = dir(&state);
    let apps = [("app".to_owned(), Words::Msf)];
    let refused = |at_ms: i64| {
        [
            evaluated("app", at_ms, Action::ScaleTo(8), false),
            failed(
                at_ms + 1,
                "permission",
                "UpdateApplication to 8 KPU failed: permission denied",
            ),
        ]
    };
    std::fs::create_dir_all(&history_dir).expect("the history folder");
    let mut files = Files::new(history_dir.clone(), 10);
    for event in [refused(1_000), refused(11_000), refused(41_000)]
        .into_iter()
        .flatten()
    {
        files.take(event);
    }
    let now = status(&state, &apps, 50_000);
    let failure = now.applications[0].failure.clone().expect("failing");
    assert_eq!(
        (failure.since_ms, failure.last_ms, failure.count),
        (1_001, 41_001, 3),
        "{now:?}"
    );
    let entries = read(&history_dir, "app", None).expect("reads");
    assert!(
        entries.iter().all(|e| e
            .outcome
            .said(Words::Msf)
            .starts_with("not scaled (permission)")),
        "{entries:?}"
    );
    files.take(evaluated("app", 60_000, Action::Hold, false));
    let held = status(&state, &apps, 61_000);
    assert_eq!(held.applications[0].failure, None, "{held:?}");
}

#[test]
fn a_history_folder_removed_under_the_agent_comes_back_by_itself() {
    let state = temp_dir("removed");
    let history_dir = dir(&state);
    let apps = [("app".to_owned(), Words::Msf)];
    let (history, writer) = spawn(history_dir.clone(), 10).expect("the history starts");
    history.record(&evaluated("app", 1_000, Action::Hold, false));
    // An operator's `rm -rf` of the whole state folder while the agent runs;
    // the writer thread is stopped first so that the removal cannot race it.
    drop(history);
    writer.finish();
    std::fs::remove_dir_all(&state).unwrap();
    let mut files = Files::new(history_dir.clone(), 10);
    files.take(evaluated("app", 2_000, Action::Hold, false));
    files.take(failed(3_000, "throttled", "Rate exceeded"));
    let entries = read(&history_dir, "app", None).expect("the history reads");
    assert_eq!(
        entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![2_000],
        "the entry after the removal is kept"
    );
    let now = status(&state, &apps, 4_000);
    assert_eq!(
        now.applications[0]
            .failure
            .as_ref()
            .map(|f| f.class.as_str()),
        Some("throttled"),
        "{now:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&history_dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }
}

/// A state folder that cannot be written fails the history at every
/// evaluation: warned once, reminded after 10 min, and said once when it
/// can be written again, not at every entry.
#[test]
fn a_history_folder_that_cannot_be_written_is_warned_of_once_and_reminded() {
    let base = temp_dir("unwritable");
    std::fs::create_dir_all(&base).expect("a temporary folder");
    // The state folder is a file: every write under it fails with
    // ENOTDIR, even for root.
    let state = base.join("state");
    std::fs::write(&state, b"not a folder").expect("a file");
    let mut files = Files::new(dir(&state), 10);
    let logs = crate::telemetry::captured_logs(false, || {
        for minute in 0..=10 {
            files.take(evaluated("app", minute * 60_000, Action::Hold, false));
        }
        std::fs::remove_file(&state).expect("the file can be removed");
        std::fs::create_dir_all(dir(&state)).expect("the folder can be made");
        files.take(evaluated("app", 700_000, Action::Hold, false));
        files.take(evaluated("app", 760_000, Action::Hold, false));
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{logs}");
    assert!(warnings[0].contains("Not a directory"), "{logs}");
    assert!(
        warnings[1].contains("The history folder still cannot be written")
            && warnings[1].contains("failing_for=10 min 0 s"),
        "{logs}"
    );
    let infos: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("writable again"))
        .collect();
    assert_eq!(infos.len(), 1, "{logs}");
    assert!(
        infos[0].contains("History folder writable again after 11 min 40 s."),
        "{logs}"
    );
    // Written again from then on.
    let entries = read(&dir(&state), "app", None).expect("the history reads");
    assert_eq!(
        entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![700_000, 760_000]
    );
}

/// On a full disk an append to the history can succeed where a new
/// failure record cannot be made: the failure record's trouble is said
/// once, and no append between two failures says the folder is writable
/// again (the reviewer's log said both at every evaluation). Once writes
/// go through again, it is said once, and a later outage is told afresh.
#[test]
fn one_kind_of_file_failing_is_not_undone_by_another_that_writes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let history = super::dir(dir.path());
    std::fs::create_dir_all(&history).expect("the history folder");
    // The failure record's temporary file cannot be made or removed.
    std::fs::create_dir(history.join(".app.failure.json.tmp")).expect("a blocking folder");
    let mut files = Files::new(history.clone(), 100);
    let logs = crate::telemetry::captured_logs(false, || {
        for minute in 0..5 {
            files.take(failed(minute * 60_000, "metrics", "GetMetricData failed"));
            files.take(evaluated("app", minute * 60_000 + 1, Action::Hold, false));
        }
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains("Cannot write the current failure record."),
        "{logs}"
    );
    assert!(!logs.contains("writable again"), "{logs}");
    assert_eq!(read(&history, "app", None).expect("reads").len(), 5);

    // The application stays healthy: its appends go through, two in a
    // row say the folder is writable again, once. The failure record then
    // fails again: a new outage, told as one.
    let logs = crate::telemetry::captured_logs(false, || {
        for minute in 5..8 {
            files.take(evaluated("app", minute * 60_000, Action::Hold, false));
        }
        files.take(failed(8 * 60_000, "metrics", "GetMetricData failed"));
    });
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[0].contains("History folder writable again after 4 min 0 s."),
        "{logs}"
    );
    assert!(
        lines[1].contains("WARN") && lines[1].contains("Cannot write the current failure record."),
        "{logs}"
    );
}

/// An accepted rescale that then came to nothing (the job was cancelled
/// and submitted again under it) is said so by its entry, where `explain`
/// showed it accepted and nothing more; a failure of another kind after
/// it (a metrics fetch) changes nothing.
#[test]
fn an_accepted_update_that_then_failed_is_said_so() {
    let dir = temp_dir("accepted-then-failed");
    let failure = |class: &str, message: &str| Event::Failed {
        application: "app".to_owned(),
        at_ms: 2000,
        class: class.to_owned(),
        plugin_class: None,
        message: message.to_owned(),
    };
    write(
        &dir,
        10,
        [
            evaluated("app", 1000, Action::ScaleTo(1), false),
            Event::RescaleStarted {
                application: "app".to_owned(),
                at_ms: 1000,
                from_kpu: 2,
                to_kpu: 1,
                version_id: 5,
            },
            failure("metrics", "GetMetricData failed"),
        ],
    );
    assert_eq!(
        read(&dir, "app", None).expect("reads")[0].outcome,
        Outcome::Accepted { kpu: 1 }
    );
    write(
        &dir,
        10,
        [failure(
            "update_result",
            "the job was replaced while an update to parallelism 1 was followed: the rescale did not carry over",
        )],
    );
    let entries = read(&dir, "app", None).expect("reads");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].outcome.said(Words::Flink),
        "not scaled (update_result): accepted, then: the job was replaced while an update to \
         parallelism 1 was followed: the rescale did not carry over"
    );
}

/// The agent's scale-in to 1 KPU decided and sent at 1000 ms, into
/// `files`; then a folder where the rewrite's temporary file goes, so
/// that no rewrite of `app`'s history can be made until it is removed.
/// Returns that folder.
fn rescale_then_block_rewrites(files: &mut Files, history: &Path) -> PathBuf {
    files.take(evaluated("app", 1000, Action::ScaleTo(1), false));
    files.take(Event::RescaleStarted {
        application: "app".to_owned(),
        at_ms: 1000,
        from_kpu: 2,
        to_kpu: 1,
        version_id: 5,
    });
    let blocker = history.join(".app.jsonl.tmp");
    std::fs::create_dir(&blocker).expect("a blocking folder");
    blocker
}

/// The outcomes of `app`'s history entries, oldest first, as said.
fn outcomes(history: &Path) -> Vec<String> {
    read(history, "app", None)
        .expect("reads")
        .iter()
        .map(|e| e.outcome.said(Words::Msf))
        .collect()
}

/// On a nearly full disk the rewrite that amends an entry's outcome (its
/// temporary copy) can fail where appends still fit: the amendment is not
/// lost but made with the next append that can write the whole file, and
/// the entries appended meanwhile are kept.
#[test]
fn an_amendment_that_cannot_be_written_is_made_at_a_later_append() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let history = super::dir(dir.path());
    std::fs::create_dir_all(&history).expect("the history folder");
    let mut files = Files::new(history.clone(), 100);
    // The rewrite's temporary file cannot be made.
    let blocker = rescale_then_block_rewrites(&mut files, &history);
    let logs = crate::telemetry::captured_logs(false, || {
        files.take(failed(2000, "update_result", "the job was replaced"));
        files.take(evaluated("app", 3000, Action::Hold, false));
    });
    assert!(
        logs.contains("Cannot write the decision history."),
        "{logs}"
    );
    assert_eq!(
        outcomes(&history),
        ["UpdateApplication accepted to 1 KPU", "held"],
        "the entry after the failed rewrite is kept"
    );
    std::fs::remove_dir(&blocker).expect("the blocker goes");
    files.take(evaluated("app", 4000, Action::Hold, false));
    assert_eq!(
        outcomes(&history),
        [
            "not scaled (update_result): accepted, then: the job was replaced",
            "held",
            "held"
        ]
    );
}

/// An amendment owed by a full history is made with the next append
/// trimmed to the bound, as any append past it is: the newest entries
/// kept, the amended one among them.
#[test]
fn an_owed_amendment_made_past_the_bound_keeps_the_newest_entries() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let history = super::dir(dir.path());
    std::fs::create_dir_all(&history).expect("the history folder");
    let mut files = Files::new(history.clone(), 3);
    files.take(evaluated("app", 500, Action::Hold, false));
    let blocker = rescale_then_block_rewrites(&mut files, &history);
    files.take(failed(2000, "update_result", "the job was replaced"));
    files.take(evaluated("app", 3000, Action::Hold, false));
    std::fs::remove_dir(&blocker).expect("the blocker goes");
    files.take(evaluated("app", 4000, Action::Hold, false));
    let at: Vec<i64> = read(&history, "app", None)
        .expect("reads")
        .iter()
        .map(|e| e.at_ms)
        .collect();
    let outcomes = outcomes(&history);
    assert_eq!(at, [1000, 3000, 4000], "{outcomes:?}");
    assert_eq!(
        outcomes,
        [
            "not scaled (update_result): accepted, then: the job was replaced",
            "held",
            "held"
        ]
    );
}

/// A full history is trimmed by a rewrite; where the rewrite's copy does
/// not fit but an append does, the entry is appended (the file passes its
/// bound for a while) and the trim is made later, not the entry lost.
#[test]
fn an_entry_whose_trim_cannot_be_written_is_appended() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let history = super::dir(dir.path());
    std::fs::create_dir_all(&history).expect("the history folder");
    let blocker = history.join(".app.jsonl.tmp");
    std::fs::create_dir(&blocker).expect("a blocking folder");
    let mut files = Files::new(history.clone(), 2);
    for second in 1..=4 {
        files.take(evaluated("app", second * 1000, Action::Hold, false));
    }
    let times = |history: &Path| -> Vec<i64> {
        read(history, "app", None)
            .expect("reads")
            .iter()
            .map(|e| e.at_ms)
            .collect()
    };
    assert_eq!(times(&history), [1000, 2000, 3000, 4000]);
    std::fs::remove_dir(&blocker).expect("the blocker goes");
    files.take(evaluated("app", 5000, Action::Hold, false));
    assert_eq!(times(&history), [4000, 5000], "trimmed to the bound");
}

/// A history at its bound that cannot be read when the next entry trims
/// it (here a symbolic link, refused with ELOOP; a disk error the same) is
/// not taken for an empty one: read as empty, the trim replaced the whole
/// history with the one new line. The entry is appended instead (which
/// fails here too, and is told), and what is there stays.
#[cfg(unix)]
#[test]
fn a_history_that_cannot_be_read_is_not_trimmed_to_one_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let history = super::dir(dir.path());
    std::fs::create_dir_all(&history).expect("the history folder");
    let mut files = Files::new(history.clone(), 2);
    for second in 1..=2 {
        files.take(evaluated("app", second * 1000, Action::Hold, false));
    }
    // At its bound: the next entry trims. Its read now fails.
    let file = history.join("app.jsonl");
    let moved = dir.path().join("moved.jsonl");
    std::fs::rename(&file, &moved).expect("moved");
    std::os::unix::fs::symlink(&moved, &file).expect("a link");
    let before = std::fs::read_to_string(&moved).expect("the history");
    assert_eq!(before.lines().count(), 2);
    files.take(evaluated("app", 3000, Action::Hold, false));
    assert!(
        file.is_symlink(),
        "replaced by {:?}",
        std::fs::read_to_string(&file)
    );
    assert_eq!(std::fs::read_to_string(&moved).expect("read"), before);
}

/// A decision to scale that had to wait (`once` in a grace period, or an
/// evaluation that found another writer's update in progress) was never
/// sent: its entry says so and why, not "no answer", which would send an
/// operator looking for an update that does not exist. A held decision
/// is not touched by a grace period noticed after it.
#[test]
fn a_decision_that_had_to_wait_is_recorded_as_not_sent() {
    let dir = temp_dir("not-sent");
    write(
        &dir,
        10,
        [
            evaluated("app", 1000, Action::ScaleTo(4), false),
            Event::NotSent {
                application: "app".to_owned(),
                at_ms: 1000,
                reason: "the grace period after the update to 3 KPU has 252 s left".to_owned(),
            },
            evaluated("app", 2000, Action::ScaleTo(4), false),
            Event::GraceHeld {
                application: "app".to_owned(),
                at_ms: 2000,
                until_ms: None,
                reason: "application is UPDATING, not RUNNING".to_owned(),
            },
            evaluated("app", 3000, Action::Hold, false),
            Event::GraceHeld {
                application: "app".to_owned(),
                at_ms: 3000,
                until_ms: Some(9000),
                reason: "another writer's update".to_owned(),
            },
        ],
    );
    let entries = read(&dir, "app", None).expect("the history reads");
    let outcomes: Vec<&Outcome> = entries.iter().map(|e| &e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            &Outcome::NotSent {
                reason: "the grace period after the update to 3 KPU has 252 s left".to_owned()
            },
            &Outcome::NotSent {
                reason: "application is UPDATING, not RUNNING".to_owned()
            },
            &Outcome::Held,
        ]
    );
    assert_eq!(
        entries[0].outcome.said(Words::Msf),
        "not sent: the grace period after the update to 3 KPU has 252 s left"
    );
}

/// A dry-run agent given the acting agent's `state_dir` writes nothing
/// into the history of an application whose journal the acting agent
/// holds (its holds read as the acting agent's own), and writes again
/// once no agent holds it; its other applications are kept as always.
#[test]
fn a_dry_run_beside_an_acting_agent_leaves_its_history_alone() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = crate::state::StateStore::open(dir.path()).expect("the state folder");
    let history = super::dir(dir.path());
    let journal = store.journal("acted").expect("the acting agent's journal");
    let dry = |events: Vec<Event>| {
        let (sender, writer) = spawn_dry_run(history.clone(), 10).expect("the history starts");
        for event in events {
            sender.record(&event);
        }
        drop(sender);
        writer.finish();
    };
    dry(vec![
        evaluated("acted", 1000, Action::ScaleTo(4), true),
        Event::Failed {
            application: "acted".to_owned(),
            at_ms: 1000,
            class: "metrics".to_owned(),
            plugin_class: None,
            message: "GetMetricData failed".to_owned(),
        },
        evaluated("alone", 1000, Action::Hold, true),
    ]);
    assert!(
        read(&history, "acted", None).expect("reads").is_empty(),
        "the dry run wrote into the acting agent's history"
    );
    assert!(
        std::fs::read_dir(&history)
            .expect("the history folder")
            .all(|e| !e
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .contains("acted")),
        "no file of the acted application"
    );
    assert_eq!(read(&history, "alone", None).expect("reads").len(), 1);
    // The acting agent stops while one dry run goes on: its decisions are
    // kept again from the next evaluation, with the signals dropped at it
    // (which come before its `Evaluated`).
    let mut files = Files {
        dry_run: true,
        ..Files::new(history.clone(), 10)
    };
    files.take(evaluated("acted", 2000, Action::ScaleTo(4), true));
    drop(journal);
    files.take(Event::SignalsDropped {
        application: "acted".to_owned(),
        at_ms: 3000,
        plugin: "lag 0.1.0".to_owned(),
        file: "plugins/lag.wasm".to_owned(),
        signals: vec![Signal {
            name: "backlog".to_owned(),
            value: f64::NAN,
        }],
        first: true,
    });
    files.take(evaluated("acted", 3000, Action::ScaleTo(4), true));
    let (sender, events) = std::sync::mpsc::channel();
    drop(sender);
    files.run(events);
    let entries = read(&history, "acted", None).expect("reads");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].at_ms, 3000);
    assert_eq!(entries[0].outcome, Outcome::DryRun { kpu: 4 });
    assert_eq!(entries[0].dropped_signals.len(), 1, "{entries:?}");
}

#[test]
fn status_says_why_a_grace_period_follows_an_update_the_agent_did_not_make() {
    let state = temp_dir("foreign-grace");
    std::fs::create_dir_all(&state).expect("the state folder");
    let journal = |phase: &str| {
        std::fs::write(
            state.join("app.json"),
            format!(
                r#"{{"format": 1, "application": "app", "seq": 1, "written_ms": 1000,
                    "record": {{"phase": {phase}}}}}"#
            ),
        )
        .expect("a journal");
    };
    journal(
        r#"{"kind": "grace", "kpu": 3, "until_ms": 301000,
            "after": "grace period after another writer's update"}"#,
    );
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 61_000);
    let app = &now.applications[0];
    assert_eq!(app.journal_error, None, "{app:?}");
    assert_eq!(
        app.grace_after.as_deref(),
        Some("grace period after another writer's update")
    );
    let text = status_text(&now);
    assert!(
        text.contains(
            "phase:      grace (240 s of grace left): grace period after another writer's update\n"
        ),
        "{text}"
    );
    // The agent's own grace period says nothing more than before.
    journal(r#"{"kind": "grace", "kpu": 3, "until_ms": 301000}"#);
    let text = status_text(&status(&state, &[("app".to_owned(), Words::Msf)], 61_000));
    assert!(
        text.contains("phase:      grace (240 s of grace left)\n"),
        "{text}"
    );
    // One that is over (an agent stopped since) says so, not "0 s left".
    let text = status_text(&status(&state, &[("app".to_owned(), Words::Msf)], 361_000));
    assert!(
        text.contains("phase:      grace (over 60 s ago: the next evaluation may act)\n"),
        "{text}"
    );
    journal(
        r#"{"kind": "foreign", "version_id": 7, "since_ms": 1000,
            "after": "grace period after the job's restart or another writer's rescale"}"#,
    );
    let text = status_text(&status(&state, &[("app".to_owned(), Words::Flink)], 61_000));
    assert!(
        text.contains(
            "phase:      foreign (a restart or update this agent did not make is followed while the job is busy; \
             then the grace period after the job's restart or another writer's rescale)\n"
        ),
        "{text}"
    );
}

#[test]
fn status_says_the_agent_stood_down_and_why() {
    let state = temp_dir("stood-down");
    std::fs::create_dir_all(&state).expect("the state folder");
    std::fs::write(
        state.join("app.json"),
        r#"{"format": 1, "application": "app", "seq": 1, "written_ms": 1000,
            "record": {"phase": {"kind": "idle"}, "fight": {"stood_down_ms": 1000,
              "overrides": [{"seen_ms": 1000, "from_version_id": 4, "to_version_id": 5,
                "from_kpu": 4, "to_kpu": 2, "own_rescale_ms": 0}]}}}"#,
    )
    .expect("a journal");
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 61_000);
    let app = &now.applications[0];
    assert_eq!(app.journal_error, None, "{app:?}");
    assert_eq!(app.stood_down.as_ref().map(|s| s.since_ms), Some(1000));
    let json = serde_json::to_value(&now).expect("JSON");
    assert_eq!(
        json["applications"][0]["stood_down"]["overrides"][0]["to_kpu"],
        2
    );
    let text = status_text(&now);
    assert!(
        text.contains(
            "  stood down: since 1970-01-01T00:00:01Z (60 s): another writer undid this agent's rescales: version 4 -> 5: 4 KPU -> 2 KPU (this agent's rescale to 4 KPU completed at 1970-01-01T00:00:00Z; the other update seen finished at 1970-01-01T00:00:01Z); no update is sent (decisions are recorded): stop the other writer, then resume it (`flinkscale reload --resume APPLICATION`)\n"
        ),
        "{text}"
    );
    // Without a stand-down, nothing is said (and the JSON has no field).
    std::fs::write(
        state.join("app.json"),
        r#"{"format": 1, "application": "app", "seq": 1, "written_ms": 1000,
            "record": {"phase": {"kind": "idle"}}}"#,
    )
    .expect("a journal");
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 61_000);
    assert!(!status_text(&now).contains("stood down"));
    let json = serde_json::to_value(&now).expect("JSON");
    assert!(
        json["applications"][0].get("stood_down").is_none(),
        "{json}"
    );
}

fn resumed(at_ms: i64, phase: &str, resume: &str) -> Event {
    Event::Resumed {
        application: "app".to_owned(),
        at_ms,
        phase: phase.to_owned(),
        resume: resume.to_owned(),
        version_id: 7,
        wait: None,
    }
}

/// The agent stops while UpdateApplication's answer is awaited (the
/// operator's drill: SIGTERM during a slow answer): the entry says "no
/// outcome recorded". The restarted agent finds the update applied, and
/// the entry then says so, as it would have had the answer come; an update
/// that never took effect, or another phase, leaves it as it is.
#[test]
fn a_restart_that_finds_the_update_applied_completes_the_entry_left_without_outcome() {
    for (resume, expected) in [
        (Resume::FINISHED, "UpdateApplication accepted to 8 KPU"),
        (Resume::FOLLOW, "UpdateApplication accepted to 8 KPU"),
        (
            Resume::FAILED,
            "not scaled (update_failed): the agent stopped before the answer; restarted, it found the update applied and the application not running",
        ),
        (
            "update never took effect: re-evaluate",
            "no answer: the agent stopped before UpdateApplication answered (the next start replaces this with what became of the update, unless it never took effect)",
        ),
    ] {
        let dir = temp_dir("amend");
        write(
            &dir,
            DEFAULT_BOUND,
            [
                evaluated("app", 1_000, Action::Hold, false),
                evaluated("app", 2_000, Action::ScaleTo(8), false),
            ],
        );
        assert_eq!(
            outcomes(&dir),
            [
                "held",
                "no answer: the agent stopped before UpdateApplication answered (the next start replaces this with what became of the update, unless it never took effect)"
            ]
        );
        write(&dir, DEFAULT_BOUND, [resumed(3_000, "sending", resume)]);
        assert_eq!(outcomes(&dir), ["held", expected], "{resume}");
        // A later restart in another phase changes nothing.
        write(
            &dir,
            DEFAULT_BOUND,
            [resumed(4_000, "grace", Resume::FINISHED)],
        );
        assert_eq!(outcomes(&dir), ["held", expected], "{resume}");
    }
    // The newest entry is a hold: nothing to complete.
    let dir = temp_dir("amend-held");
    write(
        &dir,
        DEFAULT_BOUND,
        [evaluated("app", 1_000, Action::Hold, false)],
    );
    write(
        &dir,
        DEFAULT_BOUND,
        [resumed(2_000, "sending", Resume::FINISHED)],
    );
    assert_eq!(outcomes(&dir), ["held"]);
}

/// While the agent sends an update (the intent journaled, its answer not
/// known yet), the history does not have that evaluation: `status` shows
/// the decision being sent as the last one, and the one recorded before
/// it as such, instead of that older one as `last:`.
#[test]
fn status_shows_the_decision_being_sent_before_the_one_recorded() {
    let state = temp_dir("sending");
    write(
        &dir(&state),
        10,
        [evaluated("app", 1_000, Action::Hold, false)],
    );
    std::fs::write(
        state.join("app.json"),
        r#"{"format": 1, "application": "app", "seq": 2, "written_ms": 61000,
            "record": {"phase": {"kind": "sending", "update": {"target_kpu": 4,
              "from_kpu": 2, "quoted_version_id": 3, "reason": "cpu above 75 %",
              "started_ms": 61000}}}}"#,
    )
    .expect("a journal");
    let now = status(&state, &[("app".to_owned(), Words::Msf)], 63_000);
    let app = &now.applications[0];
    assert_eq!(app.journal_error, None, "{app:?}");
    assert_eq!(
        app.sending,
        Some(Sending {
            scale_to_kpu: 4,
            from_kpu: 2,
            reason: "cpu above 75 %".to_owned(),
            at_ms: 61_000,
        })
    );
    let text = status_text(&now);
    assert!(
        text.contains(
            "  last:       scale to 4 KPU 2 s ago: cpu above 75 %; being sent: UpdateApplication's answer is not known yet\n  before:     hold 62 s ago: evaluation at 1000; held\n"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&now).expect("JSON");
    assert_eq!(json["applications"][0]["sending"]["scale_to_kpu"], 4);

    // Once the history has the evaluation (answered, or left without an
    // answer by an agent that stopped), it is the last, as before.
    write(
        &dir(&state),
        10,
        [evaluated("app", 61_000, Action::ScaleTo(4), false)],
    );
    let later = status(&state, &[("app".to_owned(), Words::Msf)], 63_000);
    assert_eq!(later.applications[0].sending, None);
    let text = status_text(&later);
    assert!(
        text.contains("  last:       scale to 4 KPU 2 s ago: evaluation at 61000; ")
            && !text.contains("before:"),
        "{text}"
    );
    let json = serde_json::to_value(&later).expect("JSON");
    assert!(json["applications"][0].get("sending").is_none(), "{json}");

    // An agent stopped with the update unanswered: the entry it wrote for
    // the decision is dated from the evaluation, just before the update,
    // and is that decision, not one before it (shown once, not as both
    // `last:` and `before:`).
    std::fs::write(
        state.join("app.json"),
        r#"{"format": 1, "application": "app", "seq": 2, "written_ms": 121000,
            "record": {"phase": {"kind": "sending", "update": {"target_kpu": 4,
              "from_kpu": 2, "quoted_version_id": 3, "reason": "evaluation at 120990",
              "started_ms": 121000}}}}"#,
    )
    .expect("a journal");
    write(
        &dir(&state),
        10,
        [evaluated("app", 120_990, Action::ScaleTo(4), false)],
    );
    let stopped = status(&state, &[("app".to_owned(), Words::Msf)], 123_000);
    assert_eq!(stopped.applications[0].sending, None);
    let text = status_text(&stopped);
    assert!(
        text.contains("  last:       scale to 4 KPU 2 s ago: evaluation at 120990; no answer: ")
            && !text.contains("before:"),
        "{text}"
    );
}

/// `status` tells whether an acting agent holds the journal (from the
/// kernel's table of locks, without taking the lock): while one does, its
/// process; once none does, a phase in flight is only where the last agent
/// left it; a paused application's journal is held by no one.
#[cfg(target_os = "linux")]
#[test]
fn status_says_whether_an_agent_holds_the_journal() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = crate::state::StateStore::open(dir.path()).expect("the state folder");
    let lock = dir.path().join("orders.lock").display().to_string();
    let configured = [("orders".to_owned(), Words::Msf)];
    let write_phase = |phase: &str| {
        std::fs::write(
            dir.path().join("orders.json"),
            format!(
                r#"{{"format": 1, "application": "orders", "seq": 1, "written_ms": 1000,
                    "record": {{"phase": {phase}}}}}"#
            ),
        )
        .expect("a journal");
    };
    let updating = r#"{"kind": "updating", "observed_ms": 2000,
        "update": {"target_kpu": 4, "from_kpu": 2, "quoted_version_id": 6,
                   "reason": "busy", "started_ms": 1000}}"#;
    let agent_line = |status: &Status| {
        status_text(status)
            .lines()
            .find_map(|l| l.strip_prefix("  agent:      ").map(str::to_owned))
            .unwrap_or_else(|| panic!("no agent line in {}", status_text(status)))
    };

    let journal = store.journal("orders").expect("the journal");
    write_phase(updating);
    let now = status(dir.path(), &configured, 3000);
    let held = now.applications[0].journal_lock.clone().expect("told");
    assert!(
        held.held && held.pid == Some(std::process::id()),
        "{held:?}"
    );
    // The kernel and the lock file name the same process: said once, with
    // the host and the time the file adds.
    let owner = held.owner.clone().expect("the lock file names its holder");
    assert_eq!(owner.pid, std::process::id());
    assert_eq!(
        agent_line(&now),
        format!(
            "running (process {} on host {}, since {}, holds {lock})",
            std::process::id(),
            owner.host,
            iso(owner.since_ms)
        )
    );
    let json = serde_json::to_value(&now).expect("serializes");
    assert_eq!(json["applications"][0]["journal_lock"]["held"], true);
    assert_eq!(
        json["applications"][0]["journal_lock"]["owner"]["pid"],
        std::process::id()
    );
    assert_eq!(
        json["applications"][0]["journal_lock"]["owner"]["host"],
        owner.host.as_str()
    );
    // Seen from outside the holder's PID namespace: the kernel's number
    // (another, or none), then what the file says.
    let app = &now.applications[0];
    let seen = |pid: Option<u32>| {
        agent_words(
            app,
            &JournalLock {
                pid,
                ..held.clone()
            },
        )
    };
    let says = format!(
        "the lock file says: process {} on host {}, since {}",
        owner.pid,
        owner.host,
        iso(owner.since_ms)
    );
    // A lock file that names no one (an older agent's): the kernel's word.
    assert_eq!(
        agent_words(
            app,
            &JournalLock {
                owner: None,
                ..held.clone()
            }
        ),
        format!("running (process {} holds {lock})", std::process::id())
    );
    assert_eq!(
        seen(Some(4_000_000)),
        format!("running (process 4000000 holds {lock}; {says})")
    );
    assert_eq!(
        seen(None),
        format!(
            "running (a process out of sight, in another PID namespace or container, holds \
             {lock}; {says})"
        )
    );

    drop(journal);
    let now = status(dir.path(), &configured, 3000);
    assert_eq!(
        now.applications[0].journal_lock.as_ref().map(|l| l.held),
        Some(false)
    );
    // The file still names the agent that held it last.
    let last = format!(
        "the last to hold it was process {} on host {}, from {}",
        owner.pid,
        owner.host,
        iso(owner.since_ms)
    );
    assert_eq!(
        agent_line(&now),
        format!(
            "not acting (no process holds {lock}: no agent runs, or it runs in dry run; {last}); \
             the phase is where the last agent left it: nothing follows it until an agent \
             starts, which resumes from there"
        )
    );
    let mut paused = now.clone();
    mark_paused(&mut paused, &["orders".to_owned()]);
    assert_eq!(
        agent_line(&paused),
        format!("not acting (no process holds {lock}: the application is paused)")
    );
    write_phase(r#"{"kind": "idle"}"#);
    assert_eq!(
        agent_line(&status(dir.path(), &configured, 3000)),
        format!(
            "not acting (no process holds {lock}: no agent runs, or it runs in dry run; {last})"
        )
    );
    // A lock file no agent ever wrote its name into (an older agent's).
    std::fs::write(dir.path().join("orders.lock"), b"").expect("emptied");
    assert_eq!(
        agent_line(&status(dir.path(), &configured, 3000)),
        format!("not acting (no process holds {lock}: no agent runs, or it runs in dry run)")
    );
}

/// Links planted in the history folder are never followed: not the
/// history a line is appended to, not the temporary file a record is
/// written through (which is replaced, not truncated through the link).
/// The files they point to stay as they were.
#[cfg(unix)]
#[test]
fn planted_symbolic_links_are_not_written_through() {
    let state = temp_dir("links");
    let history_dir = dir(&state);
    std::fs::create_dir_all(&history_dir).expect("a folder");
    let victim = state.join("victim.txt");
    let other = state.join("other.txt");
    std::fs::write(&victim, "IMPORTANT\n").expect("a victim");
    std::fs::write(&other, "ALSO\n").expect("another");
    std::os::unix::fs::symlink(&victim, history_dir.join("app.jsonl")).expect("a link");
    std::os::unix::fs::symlink(&other, history_dir.join(".app.failure.json.tmp")).expect("a link");
    write(
        &history_dir,
        10,
        [
            evaluated("app", 1_000, Action::Hold, false),
            failed(2_000, "throttled", "Rate exceeded"),
        ],
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "IMPORTANT\n");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "ALSO\n");
    // The record was written all the same, as a file of its own.
    let failure = history_dir.join("app.failure.json");
    assert!(
        !failure.is_symlink()
            && std::fs::read_to_string(&failure)
                .unwrap()
                .contains("throttled")
    );
}

/// The newest `want` entries of `bytes` as the whole file read at once
/// would give them, and the unreadable lines among the lines from the
/// end back to the oldest of them: what [`read_tail`] must give.
fn read_naively(bytes: &[u8], want: usize) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut unreadable = 0;
    for line in bytes.split(|b| *b == b'\n').rev() {
        if entries.len() == want {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(&text) {
            Ok(entry) if line.len() <= MAX_LINE_BYTES => entries.push(entry),
            _ => unreadable += 1,
        }
    }
    entries.reverse();
    (entries, unreadable)
}

/// Reading a history from its end, a chunk at a time, gives what reading
/// it whole gives: on files of entries, damaged and blank lines, bytes
/// that are not UTF-8, a torn last line and lines longer than a chunk or
/// than the longest line read, cut at every kind of place by the chunks.
#[test]
fn a_history_read_from_its_end_is_what_reading_it_whole_gives() {
    let source = temp_dir("tail-source");
    write(
        &source,
        10,
        (0..3).map(|i| evaluated("app", i, Action::ScaleTo(i as u32 + 3), false)),
    );
    let good: Vec<String> = std::fs::read_to_string(source.join("app.jsonl"))
        .expect("the history file")
        .lines()
        .map(str::to_owned)
        .collect();
    let dir = temp_dir("tail");
    std::fs::create_dir_all(&dir).expect("the folder");
    let mut random = crate::random::SplitMix64::new(7);
    for round in 0..10 {
        let mut bytes = Vec::new();
        for _ in 0..random.below(600) {
            match random.below(40) {
                0 => bytes.extend_from_slice(b"{\"at_ms\": \xff\xfe}"),
                1 => bytes.extend_from_slice(b"   "),
                2 => bytes.extend(std::iter::repeat_n(b'x', 70_000)),
                3 if random.below(8) == 0 => {
                    bytes.extend(std::iter::repeat_n(b'y', MAX_LINE_BYTES + 5))
                }
                _ => bytes.extend_from_slice(good[random.below(3) as usize].as_bytes()),
            }
            bytes.push(b'\n');
        }
        if round % 2 == 1 {
            bytes.extend_from_slice(b"{\"at_ms\": 12"); // torn
        }
        std::fs::write(dir.join("app.jsonl"), &bytes).expect("written");
        for want in [1, 20, usize::MAX] {
            let last = (want != usize::MAX).then_some(want);
            let (entries, unreadable) = read_counted(&dir, "app", last).expect("the history reads");
            let (expected, expected_unreadable) = read_naively(&bytes, want);
            assert_eq!(entries, expected, "round {round}, last {last:?}");
            assert_eq!(
                unreadable, expected_unreadable,
                "round {round}, last {last:?}"
            );
        }
    }
}

/// `status` (the newest entry) and `explain --last N` read a history from
/// its end: a file grown to 16 GiB (by hand or another program; the agent
/// keeps 1000 entries) answers at once, where reading it whole would take
/// the memory of the machine.
#[test]
fn the_newest_entries_of_a_huge_history_are_read_without_reading_it_whole() {
    let dir = temp_dir("huge");
    write(
        &dir,
        10,
        (0..3).map(|i| evaluated("app", i, Action::Hold, false)),
    );
    let path = dir.join("app.jsonl");
    let tail = std::fs::read(&path).expect("the history file");
    let file = OpenOptions::new().write(true).open(&path).expect("opens");
    // A sparse file: 16 GiB of zeros (one "line"), taking no disk.
    file.set_len(16 << 30).expect("grown");
    drop(file);
    let mut file = OpenOptions::new().append(true).open(&path).expect("opens");
    file.write_all(b"\n").expect("written");
    file.write_all(&tail).expect("written");
    drop(file);
    let started = std::time::Instant::now();
    let newest = read(&dir, "app", Some(1)).expect("the history reads");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].at_ms, 2);
    let three = read(&dir, "app", Some(3)).expect("the history reads");
    assert_eq!(three.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
