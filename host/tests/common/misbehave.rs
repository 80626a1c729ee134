//! What the misbehaving Python and JavaScript fixtures
//! (`tests/fixtures/polyglot`) are held to, a policy's and an
//! interpreter's alike: each mode's expected answer; an error that names
//! the plugin, holds the expected words and is never a trap (every mistake
//! is the helper's returned error, the host's deadline or the host's
//! refusal of the answer); and the two languages compared mode by mode,
//! in the same words where the helpers promise them, in other words where
//! the languages differ by nature.

use std::fmt::Debug;

/// How a fixture is expected to answer in one mode.
pub struct Expected<A: 'static> {
    /// The fixture's parameters, which pick the mode.
    pub params: &'static str,
    /// A good answer, or the fragments the error text must contain.
    pub answer: Result<A, &'static [&'static str]>,
    /// Whether the two languages must say it identically (a language's own
    /// runtime errors differ by nature).
    pub same_words: bool,
    /// Fragments only the Python (first) or the JavaScript (second) error
    /// must contain, where the languages differ by nature.
    pub own_words: [&'static [&'static str]; 2],
}

impl<A> Expected<A> {
    /// A good answer, the same in both languages.
    pub const fn answers(params: &'static str, answer: A) -> Self {
        Self {
            params,
            answer: Ok(answer),
            same_words: true,
            own_words: [&[], &[]],
        }
    }

    /// An error holding `fragments`, in the same words in both languages.
    pub const fn fails(params: &'static str, fragments: &'static [&'static str]) -> Self {
        Self {
            params,
            answer: Err(fragments),
            same_words: true,
            own_words: [&[], &[]],
        }
    }

    /// An error holding `fragments` in both languages, and each language's
    /// own words besides (Python's first), which differ by nature.
    pub const fn fails_in_own_words(
        params: &'static str,
        fragments: &'static [&'static str],
        own_words: [&'static [&'static str]; 2],
    ) -> Self {
        Self {
            params,
            answer: Err(fragments),
            same_words: false,
            own_words,
        }
    }
}

/// Checks the error `text` that the `label` fixture (`python` or
/// `javascript`) gave in `expected`'s mode, where an error was expected:
/// it names the plugin (`plugin`, e.g. `misbehave-policy 0.1.0`), holds
/// every expected fragment and the language's own words, and is no trap.
pub fn check_error<A: Debug>(label: &str, plugin: &str, expected: &Expected<A>, text: &str) {
    let params = expected.params;
    let fragments = match &expected.answer {
        Err(fragments) => *fragments,
        Ok(answer) => panic!("{label} with {params}: expected {answer:?}, found the error {text}"),
    };
    assert!(
        text.starts_with(&format!(
            "plugin {plugin} (<file>) for application \"orders\" "
        )),
        "{label} with {params}: the error does not name the plugin: {text}"
    );
    let own = expected.own_words[usize::from(label == "javascript")];
    for fragment in fragments.iter().chain(own) {
        assert!(
            text.contains(fragment),
            "{label} with {params}: `{fragment}` missing from: {text}"
        );
    }
    assert!(
        !text.contains(": Trap: "),
        "{label} with {params}: the helper trapped where it promises an error: {text}"
    );
}

/// Compares the answers of the Python (first) and the JavaScript (second)
/// fixture, one per mode of `modes`: equal where the same words are
/// promised, and different where the languages differ by nature (else
/// that mode should require the same words).
pub fn compare_languages<A, R: PartialEq + Debug>(modes: &[Expected<A>], answers: &[Vec<R>]) {
    assert_eq!(answers.len(), 2, "one list of answers per language");
    for (index, expected) in modes.iter().enumerate() {
        if expected.same_words {
            assert_eq!(
                answers[1][index], answers[0][index],
                "the JavaScript helper reports {} in other words than the Python one",
                expected.params
            );
        } else {
            assert_ne!(
                answers[1][index], answers[0][index],
                "{} is reported identically: require the same words",
                expected.params
            );
        }
    }
}
