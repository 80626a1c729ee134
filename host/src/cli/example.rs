//! `flinkscale example`: the example configurations, inside the binary.
//!
//! The README's configuration reference points at `config/`, one example
//! per metric family of the reference design and a few more; a user who
//! installed only the binary has no checkout to find them in. Each is
//! embedded here as the file is, so `flinkscale example msk-lag >
//! flinkscale.toml` starts a configuration from any folder, and a test
//! keeps the list equal to the files and each one valid.

use std::process::ExitCode;

/// One embedded example: its name (the file's, without `.toml`), what it
/// shows, and its text.
pub struct Example {
    /// The name `flinkscale example NAME` takes.
    pub name: &'static str,
    /// What it shows, in one line.
    pub summary: &'static str,
    /// The configuration, as the file in the repository has it.
    pub text: &'static str,
}

/// Every example, in the order `flinkscale example` lists them.
pub const EXAMPLES: &[Example] = &[
    Example {
        name: "msf-cpu",
        summary: "the reference design on CPU, as documented: CPU alarms, step policy",
        text: include_str!("../../../config/msf-cpu.toml"),
    },
    Example {
        name: "msk-lag",
        summary: "Kafka consumer lag of an Amazon MSK topic",
        text: include_str!("../../../config/msk-lag.toml"),
    },
    Example {
        name: "kinesis-iterator-age",
        summary: "how far a polling Kinesis consumer falls behind",
        text: include_str!("../../../config/kinesis-iterator-age.toml"),
    },
    Example {
        name: "kinesis-efo",
        summary: "how far an enhanced fan-out Kinesis consumer falls behind",
        text: include_str!("../../../config/kinesis-efo.toml"),
    },
    Example {
        name: "custom-metric",
        summary: "a metric the application publishes itself",
        text: include_str!("../../../config/custom-metric.toml"),
    },
    Example {
        name: "multi-app",
        summary: "one agent for several applications, several metrics each",
        text: include_str!("../../../config/multi-app.toml"),
    },
    Example {
        name: "msk-backlog-seconds",
        summary: "a time SLO (minutes behind) through two interpreter plugins",
        text: include_str!("../../../config/msk-backlog-seconds.toml"),
    },
    Example {
        name: "flink-ec2",
        summary: "a self-managed Flink job over its REST API, `rate` on Flink's own metrics",
        text: include_str!("../../../deploy/flink-ec2/config.toml"),
    },
    Example {
        name: "demo",
        summary: "what `flinkscale demo` runs against its built-in emulator",
        text: include_str!("../../../config/demo.toml"),
    },
];

/// Prints the example `name`, or the list when `name` is `None`. An
/// unknown name exits 2 with the valid names.
pub fn run(name: Option<&str>) -> ExitCode {
    let Some(name) = name else {
        let width = EXAMPLES.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for example in EXAMPLES {
            println!("{:width$}  {}", example.name, example.summary);
        }
        println!(
            "\n`flinkscale example NAME > flinkscale.toml` writes one; edit it, then `flinkscale validate flinkscale.toml`."
        );
        return ExitCode::SUCCESS;
    };
    match EXAMPLES.iter().find(|e| e.name == name) {
        Some(example) => {
            print!("{}", example.text);
            ExitCode::SUCCESS
        }
        None => {
            let names: Vec<&str> = EXAMPLES.iter().map(|e| e.name).collect();
            eprintln!(
                "error: no example named {name:?}; valid: {}",
                names.join(", ")
            );
            ExitCode::from(2)
        }
    }
}
