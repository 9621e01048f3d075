use super::*;

#[test]
fn parses_valid_durations() {
    let cases: &[(&str, Duration)] = &[
        ("0s", Duration::ZERO),
        ("1ms", Duration::from_millis(1)),
        ("500ms", Duration::from_millis(500)),
        ("1s", Duration::from_secs(1)),
        ("30s", Duration::from_secs(30)),
        ("1m", Duration::from_secs(60)),
        ("2h", Duration::from_secs(7_200)),
        ("1m30s", Duration::from_secs(90)),
        ("1h2m3s4ms", Duration::from_millis(3_723_004)),
        // Like Go's time.ParseDuration (and so CEL's duration()): terms add up in any order.
        ("30s1m", Duration::from_secs(90)),
        ("1s1s", Duration::from_secs(2)),
        ("007s", Duration::from_secs(7)),
    ];
    for (input, want) in cases {
        assert_eq!(parse_duration(input), Ok(*want), "input {input:?}");
    }
}

#[test]
fn rejects_invalid_durations() {
    let cases: &[(&str, DurationError)] = &[
        ("", DurationError::Empty),
        (
            "30",
            DurationError::MissingUnit {
                input: "30".into(),
                number: "30".into(),
            },
        ),
        (
            "1m30",
            DurationError::MissingUnit {
                input: "1m30".into(),
                number: "30".into(),
            },
        ),
        (
            "s",
            DurationError::ExpectedNumber {
                input: "s".into(),
                at: 0,
            },
        ),
        (
            "-1s",
            DurationError::ExpectedNumber {
                input: "-1s".into(),
                at: 0,
            },
        ),
        (
            " 1s",
            DurationError::ExpectedNumber {
                input: " 1s".into(),
                at: 0,
            },
        ),
        (
            "1s ",
            DurationError::ExpectedNumber {
                input: "1s ".into(),
                at: 2,
            },
        ),
        (
            "1.5s",
            DurationError::UnexpectedCharacter {
                input: "1.5s".into(),
                at: 1,
                found: '.',
            },
        ),
        (
            "1 s",
            DurationError::UnexpectedCharacter {
                input: "1 s".into(),
                at: 1,
                found: ' ',
            },
        ),
        (
            "10sec",
            DurationError::UnknownUnit {
                input: "10sec".into(),
                unit: "sec".into(),
            },
        ),
        (
            "5us",
            DurationError::UnknownUnit {
                input: "5us".into(),
                unit: "us".into(),
            },
        ),
        (
            "1d",
            DurationError::UnknownUnit {
                input: "1d".into(),
                unit: "d".into(),
            },
        ),
        (
            "1S",
            DurationError::UnknownUnit {
                input: "1S".into(),
                unit: "S".into(),
            },
        ),
        (
            "99999999999999999999s",
            DurationError::Overflow {
                input: "99999999999999999999s".into(),
            },
        ),
        (
            "9999999999999999h",
            DurationError::Overflow {
                input: "9999999999999999h".into(),
            },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(parse_duration(input).as_ref(), Err(want), "input {input:?}");
    }
}

#[test]
fn errors_explain_the_fix() {
    let message = parse_duration("30").expect_err("no unit").to_string();
    assert_eq!(
        message,
        r#""30": the number 30 has no unit; use ms, s, m or h (e.g. "30s")"#
    );
}

#[test]
fn formats_durations_that_parse_back() {
    let cases: &[(Duration, &str)] = &[
        (Duration::ZERO, "0s"),
        (Duration::from_millis(500), "500ms"),
        (Duration::from_secs(30), "30s"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(3_600), "1h"),
        (Duration::from_millis(3_723_004), "1h2m3s4ms"),
    ];
    for (duration, want) in cases {
        assert_eq!(format_duration(*duration), *want);
        assert_eq!(parse_duration(want), Ok(*duration));
    }
}
