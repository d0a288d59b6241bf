//! When a certificate expires: a small DER walk to `notAfter`.
//!
//! ```text
//! Certificate     ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate  ::= SEQUENCE { [0] EXPLICIT version OPTIONAL, serialNumber INTEGER,
//!                                signature AlgorithmIdentifier, issuer Name,
//!                                validity Validity, ... }
//! Validity        ::= SEQUENCE { notBefore Time, notAfter Time }
//! Time            ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }
//! ```
//!
//! Only what RFC 5280 allows is accepted: `YYMMDDHHMMSSZ` (years 1950–2049)
//! and `YYYYMMDDHHMMSSZ`, both in UTC with seconds and no fraction.

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Why a certificate's expiry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the certificate's notAfter: {0}")]
pub struct CertError(&'static str);

/// The certificate's `notAfter`, in seconds since the Unix epoch.
pub fn not_after(der: &[u8]) -> Result<i64, CertError> {
    let (cert, _) = element(der, SEQUENCE, "certificate is not a SEQUENCE")?;
    let (mut tbs, _) = element(cert, SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs, VERSION, "bad version")?.1;
    }
    tbs = element(tbs, INTEGER, "serialNumber is not an INTEGER")?.1;
    tbs = element(tbs, SEQUENCE, "signature is not a SEQUENCE")?.1;
    tbs = element(tbs, SEQUENCE, "issuer is not a SEQUENCE")?.1;
    let (validity, _) = element(tbs, SEQUENCE, "validity is not a SEQUENCE")?;
    let (_, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Ok(not_after)
}

/// The earliest `notAfter` of `chain` (the leaf and the intermediates of
/// the path that verified), and the first error of a certificate that
/// could not be read (the others still count).
pub fn earliest_not_after<'a>(
    chain: impl IntoIterator<Item = &'a [u8]>,
) -> (Option<i64>, Option<CertError>) {
    let mut earliest: Option<i64> = None;
    let mut error = None;
    for der in chain {
        match not_after(der) {
            Ok(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    (earliest, error)
}

/// One `Time` at the start of `input`, and what follows it.
fn time(input: &[u8]) -> Result<(i64, &[u8]), CertError> {
    match input.first() {
        Some(&UTC_TIME) => {
            let (text, rest) = element(input, UTC_TIME, "bad UTCTime")?;
            Ok((parse_time(text, 2)?, rest))
        }
        Some(&GENERALIZED_TIME) => {
            let (text, rest) = element(input, GENERALIZED_TIME, "bad GeneralizedTime")?;
            Ok((parse_time(text, 4)?, rest))
        }
        _ => Err(CertError(
            "validity time is neither UTCTime nor GeneralizedTime",
        )),
    }
}

/// `YYMMDDHHMMSSZ` (`year_digits` 2) or `YYYYMMDDHHMMSSZ` (4) to epoch seconds.
fn parse_time(text: &[u8], year_digits: usize) -> Result<i64, CertError> {
    let bad = CertError("malformed time");
    if text.len() != year_digits + 11 || text.last() != Some(&b'Z') {
        return Err(bad);
    }
    let digits = &text[..text.len() - 1];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
    };
    let mut year = number(0..year_digits);
    if year_digits == 2 {
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let at = year_digits;
    let (month, day) = (number(at..at + 2), number(at + 2..at + 4));
    let (hour, minute, second) = (
        number(at + 4..at + 6),
        number(at + 6..at + 8),
        number(at + 8..at + 10),
    );
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return Err(bad);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The content of the element with `tag` at the start of `input`, and what
/// follows it.
fn element<'a>(
    input: &'a [u8],
    tag: u8,
    problem: &'static str,
) -> Result<(&'a [u8], &'a [u8]), CertError> {
    let truncated = CertError("truncated DER");
    match input.first() {
        Some(t) if *t == tag => {}
        Some(_) => return Err(CertError(problem)),
        None => return Err(truncated),
    }
    let first = *input.get(1).ok_or(truncated.clone())?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return Err(CertError("unsupported DER length"));
        }
        let bytes = input.get(2..2 + octets).ok_or(truncated.clone())?;
        let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (len, 2 + octets)
    };
    let end = header.checked_add(len).ok_or(truncated.clone())?;
    let content = input.get(header..end).ok_or(truncated)?;
    Ok((content, &input[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// DER of one element (lengths up to 65535).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A certificate skeleton with the given validity times (tag, text).
    fn cert(version: bool, not_before: (u8, &str), not_after: (u8, &str), pad: usize) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(VERSION, &tlv(INTEGER, &[2])));
        }
        tbs.extend(tlv(INTEGER, &[0x01, 0x02, 0x03]));
        tbs.extend(tlv(SEQUENCE, &tlv(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend(tlv(SEQUENCE, &vec![0x31; pad]));
        let mut validity = tlv(not_before.0, not_before.1.as_bytes());
        validity.extend(tlv(not_after.0, not_after.1.as_bytes()));
        tbs.extend(tlv(SEQUENCE, &validity));
        tbs.extend(tlv(SEQUENCE, &[])); // subject
        let mut body = tlv(SEQUENCE, &tbs);
        body.extend(tlv(SEQUENCE, &[]));
        body.extend(tlv(0x03, &[0]));
        tlv(SEQUENCE, &body)
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        let c = cert(
            true,
            (UTC_TIME, "200101000000Z"),
            (UTC_TIME, "491231235959Z"),
            3,
        );
        assert_eq!(not_after(&c), Ok(2_524_607_999)); // 2049-12-31T23:59:59Z
        let c = cert(
            false,
            (UTC_TIME, "991231000000Z"),
            (GENERALIZED_TIME, "20500101000000Z"),
            300,
        );
        assert_eq!(not_after(&c), Ok(2_524_608_000)); // 2050-01-01T00:00:00Z
        let c = cert(
            true,
            (UTC_TIME, "700101000000Z"),
            (UTC_TIME, "700101000000Z"),
            0,
        );
        assert_eq!(not_after(&c), Ok(0));
        let c = cert(
            true,
            (UTC_TIME, "700101000000Z"),
            (UTC_TIME, "500101000000Z"),
            0,
        );
        assert_eq!(not_after(&c), Ok(-631_152_000)); // 1950
    }

    #[test]
    fn rejects_malformed_times_and_structures() {
        for bad in [
            (UTC_TIME, "491231235959"),
            (UTC_TIME, "4912312359Z"),
            (UTC_TIME, "491331000000Z"),
            (UTC_TIME, "490230000000Z"),
            (UTC_TIME, "490101240000Z"),
            (GENERALIZED_TIME, "20500101000000.5Z"),
            (GENERALIZED_TIME, "2050010100000+Z"),
            (0x04, "20500101000000Z"),
        ] {
            let c = cert(true, (UTC_TIME, "200101000000Z"), bad, 1);
            assert!(not_after(&c).is_err(), "{bad:?}");
        }
        let good = cert(
            true,
            (UTC_TIME, "200101000000Z"),
            (UTC_TIME, "300101000000Z"),
            1,
        );
        for n in 0..good.len() {
            assert!(not_after(&good[..n]).is_err(), "truncated at {n}");
        }
        assert!(not_after(b"").is_err());
        assert!(not_after(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }

    #[test]
    fn the_earliest_expiry_of_the_chain_counts() {
        let leaf = cert(
            true,
            (UTC_TIME, "200101000000Z"),
            (UTC_TIME, "300101000000Z"),
            1,
        );
        let intermediate = cert(
            true,
            (UTC_TIME, "200101000000Z"),
            (UTC_TIME, "270601000000Z"),
            1,
        );
        let root_like = cert(
            true,
            (UTC_TIME, "200101000000Z"),
            (UTC_TIME, "400101000000Z"),
            1,
        );
        let chain = [
            leaf.as_slice(),
            intermediate.as_slice(),
            root_like.as_slice(),
        ];
        let (earliest, error) = earliest_not_after(chain);
        assert_eq!(earliest, not_after(&intermediate).ok());
        assert_eq!(error, None);
        // An unreadable certificate is reported; the readable ones still count.
        let (earliest, error) = earliest_not_after([b"junk".as_slice(), leaf.as_slice()]);
        assert_eq!(earliest, not_after(&leaf).ok());
        assert!(error.is_some());
        assert_eq!(earliest_not_after([]), (None, None));
    }

    #[test]
    fn leap_days() {
        assert!(parse_time(b"20000229000000Z", 4).is_ok());
        assert!(parse_time(b"21000229000000Z", 4).is_err());
        assert!(parse_time(b"240229000000Z", 2).is_ok());
        assert!(parse_time(b"230229000000Z", 2).is_err());
    }

    /// Days since the epoch, counted the slow way.
    fn days_slowly(year: i64, month: i64, day: i64) -> i64 {
        let mut days = 0;
        for y in 1970..year {
            days += (1..=12).map(|m| days_in_month(y, m)).sum::<i64>();
        }
        for m in 1..month {
            days += days_in_month(year, m);
        }
        days + day - 1
    }

    proptest! {
        #[test]
        fn civil_days_match_counting(year in 1970i64..2400, month in 1i64..=12, day in 1i64..=28) {
            prop_assert_eq!(days_from_civil(year, month, day), days_slowly(year, month, day));
        }

        #[test]
        fn generalized_and_utc_agree(year in 1950i64..2050, month in 1u32..=12, day in 1u32..=28,
                                     h in 0u32..24, m in 0u32..60, s in 0u32..60) {
            let long = format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}Z");
            let short = &long[2..];
            let a = not_after(&cert(true, (UTC_TIME, short), (UTC_TIME, short), 2));
            let b = not_after(&cert(true, (UTC_TIME, short), (GENERALIZED_TIME, &long), 2));
            prop_assert!(a.is_ok());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn the_chain_expiry_is_the_minimum(years in proptest::collection::vec(1950i64..2050, 1..6)) {
            let certs: Vec<Vec<u8>> = years
                .iter()
                .map(|y| cert(true, (UTC_TIME, "200101000000Z"), (GENERALIZED_TIME, &format!("{y:04}0101000000Z")), 1))
                .collect();
            let (earliest, error) = earliest_not_after(certs.iter().map(Vec::as_slice));
            let min = years.iter().min().copied().unwrap_or(0);
            prop_assert_eq!(earliest, Some(days_from_civil(min, 1, 1) * 86_400));
            prop_assert_eq!(error, None);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = not_after(&bytes);
            let mut framed = vec![0x30, 0x82, 0x01, 0x00];
            framed.extend(&bytes);
            let _ = not_after(&framed);
        }
    }
}
