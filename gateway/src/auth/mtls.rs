//! Client certificates → principals, compatible with Kafka's SSL principal mapping.
//!
//! A broker names a TLS client by the subject of its certificate, printed the way Java's
//! `X500Principal.getName()` prints it (RFC 2253 style), and then rewritten by the
//! `ssl.principal.mapping.rules` setting. The gateway reproduces both steps exactly, so ACLs
//! and mapping rules written for a Kafka cluster mean the same thing here:
//!
//! - [`subject_dn`] prints a certificate's subject;
//! - [`PrincipalMapper`] applies the rules.

use std::fmt::Write as _;

use regex::Regex;
use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// Why a certificate or a rule set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtlsError {
    /// The certificate is not valid DER X.509.
    #[error("invalid client certificate: {0}")]
    InvalidCertificate(String),
    /// The principal mapping rules do not parse.
    #[error("invalid principal mapping rules: {0}")]
    InvalidRules(String),
}

/// RFC 2253 string of the subject of a DER certificate, the way Java's
/// `X500Principal.getName()` prints it:
///
/// - RDNs in reverse order of the encoding, joined by `,` without spaces; the attributes of a
///   multi-valued RDN joined by `+` in encoding order;
/// - keywords `CN`, `C`, `L`, `ST`, `O`, `OU`, `STREET`, `DC`, `UID`; other attribute types as
///   dotted OIDs;
/// - values of other attribute types, and values that are not directory strings, as `#`
///   followed by the lowercase hex of their DER encoding;
/// - string values with `, = + < > # ; " \` escaped by a backslash wherever they occur, NUL
///   as `\00`, and every leading and trailing space (or CR) escaped.
pub fn subject_dn(cert_der: &[u8]) -> Result<String, MtlsError> {
    let (rest, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| MtlsError::InvalidCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MtlsError::InvalidCertificate(
            "trailing bytes after the certificate".to_string(),
        ));
    }
    Ok(format_name(cert.subject()))
}

/// Prints a parsed X.500 name as Java's `X500Principal.getName()` does (see [`subject_dn`]).
fn format_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = atv.attr_value();
                    match keyword(&oid) {
                        Some(keyword) => match directory_string(value.tag(), value.data) {
                            Some(text) => format!("{keyword}={}", escape_value(&text)),
                            None => format!("{keyword}={}", hex_value(value)),
                        },
                        // RFC 2253 prefers the binary form for dotted-decimal types, and Java
                        // always uses it.
                        None => format!("{oid}={}", hex_value(value)),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The RFC 2253 keyword Java prints for an attribute type.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// Decodes the string types Java prints as text, with the charset Java uses for each;
/// `None` for every other type (printed in binary form).
fn directory_string(tag: Tag, data: &[u8]) -> Option<String> {
    // Java decodes with replacement characters rather than failing.
    let ascii = |d: &[u8]| {
        d.iter()
            .map(|&b| if b.is_ascii() { b as char } else { '\u{fffd}' })
            .collect::<String>()
    };
    Some(match tag {
        Tag::Utf8String => String::from_utf8_lossy(data).into_owned(),
        Tag::PrintableString | Tag::Ia5String | Tag::GeneralString => ascii(data),
        // Latin-1: every byte is the code point of the same value.
        Tag::T61String => data.iter().map(|&b| b as char).collect(),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| match c {
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    _ => 0xfffd,
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => return None,
    })
}

/// `#` and the lowercase hex of the value's DER encoding.
fn hex_value(value: &x509_parser::asn1_rs::Any<'_>) -> String {
    let der = value.to_der_vec().unwrap_or_else(|_| value.data.to_vec());
    let mut out = String::with_capacity(1 + 2 * der.len());
    out.push('#');
    for b in der {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Escapes a string value as Java's RFC 2253 printer does.
fn escape_value(value: &str) -> String {
    const SPECIAL: &str = ",=+<>#;\"\\";
    let mut escaped: Vec<char> = Vec::with_capacity(value.len());
    for c in value.chars() {
        if SPECIAL.contains(c) {
            escaped.push('\\');
            escaped.push(c);
        } else if c == '\0' {
            escaped.extend(['\\', '0', '0']);
        } else {
            escaped.push(c);
        }
    }
    // Leading and trailing whitespace (space or CR) of the escaped text get a backslash each.
    let is_ws = |c: &char| *c == ' ' || *c == '\r';
    let lead = escaped.iter().take_while(|c| is_ws(c)).count();
    let trail = escaped.iter().rev().take_while(|c| is_ws(c)).count();
    let mut out = String::with_capacity(escaped.len() + lead + trail);
    for (i, c) in escaped.iter().enumerate() {
        if i < lead || i >= escaped.len() - trail {
            out.push('\\');
        }
        out.push(*c);
    }
    out
}

/// Kafka's `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[LU],...,DEFAULT`,
/// evaluated in order, first match wins.
///
/// - A `RULE` applies when its regex matches the *whole* DN; the result is the replacement
///   with `$1`.. (and `${name}`) replaced by the groups; `\x` is a literal `x`; a `$n` naming
///   a group the regex does not have is kept literally (as Kafka does). `/L` lowercases and
///   `/U` uppercases the result.
/// - `DEFAULT` yields the whole DN.
/// - Rules are separated by commas at top level: a rule's pattern and replacement run up to
///   the next unescaped `/`, so they may contain commas. Whitespace around rules is ignored,
///   empty entries are skipped.
///
/// Regexes use Rust `regex` syntax, which agrees with Java's for the usual constructs (no
/// look-around or back-references). A rule that yields an empty name counts as no match.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Rewrite {
        /// The pattern anchored at both ends (`matches()` semantics).
        regex: Regex,
        replacement: Vec<Part>,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(usize),
    Named(String),
}

impl PrincipalMapper {
    /// Parses a rule string such as
    /// `RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT`. A string with no rule at all is
    /// refused: it would reject every certificate.
    pub fn parse(rules: &str) -> Result<Self, MtlsError> {
        let mut parsed = Vec::new();
        let text = rules.trim();
        let mut pos = 0;
        while pos < text.len() {
            pos += leading_ws(&text[pos..]);
            let rest = &text[pos..];
            let consumed = if rest.starts_with("DEFAULT") {
                parsed.push(Rule::Default);
                "DEFAULT".len()
            } else if let Some(body) = rest.strip_prefix("RULE:") {
                let (rule, used) = parse_rule(body)?;
                parsed.push(rule);
                "RULE:".len() + used
            } else if rest.starts_with(',') || rest.is_empty() {
                0 // an empty entry
            } else {
                let entry = rest.split(',').next().unwrap_or(rest);
                return Err(MtlsError::InvalidRules(format!("invalid rule `{entry}`")));
            };
            pos += consumed;
            pos += leading_ws(&text[pos..]);
            match text[pos..].chars().next() {
                None => {}
                Some(',') => pos += 1,
                Some(_) => {
                    let junk = text[pos..].split(',').next().unwrap_or_default();
                    return Err(MtlsError::InvalidRules(format!(
                        "unexpected `{junk}` after a rule"
                    )));
                }
            }
        }
        if parsed.is_empty() {
            return Err(MtlsError::InvalidRules("no rules".to_string()));
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The default mapping (`DEFAULT`): the principal is the whole DN.
    pub fn default_rules() -> Self {
        PrincipalMapper {
            rules: vec![Rule::Default],
        }
    }

    /// The principal name for a DN; `None` when no rule applies (authentication fails).
    pub fn map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()).filter(|s| !s.is_empty()),
            Rule::Rewrite {
                regex,
                replacement,
                case,
            } => {
                let caps = regex.captures(dn)?;
                let mut out = String::new();
                for part in replacement {
                    match part {
                        Part::Literal(s) => out.push_str(s),
                        Part::Group(i) => {
                            out.push_str(caps.get(*i).map_or("", |m| m.as_str()));
                        }
                        Part::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
                    }
                }
                let out = match case {
                    Case::Keep => out,
                    Case::Lower => out.to_lowercase(),
                    Case::Upper => out.to_uppercase(),
                };
                Some(out).filter(|s| !s.is_empty())
            }
        })
    }
}

impl Default for PrincipalMapper {
    fn default() -> Self {
        Self::default_rules()
    }
}

/// Length of leading whitespace.
fn leading_ws(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// Reads one `/`-terminated segment in which `\` escapes any character (the escape is kept:
/// it means something to the regex or to the replacement). Returns the segment and the bytes
/// consumed including the `/`.
fn segment(s: &str) -> Option<(&str, usize)> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '/' => return Some((&s[..i], i + 1)),
            _ => {}
        }
    }
    None
}

/// Parses `pattern/replacement/[LU]` (after `RULE:`); returns the rule and bytes consumed.
fn parse_rule(body: &str) -> Result<(Rule, usize), MtlsError> {
    let unterminated = || {
        MtlsError::InvalidRules(format!(
            "rule `RULE:{}` needs the form RULE:pattern/replacement/[LU]",
            body.split(',').next().unwrap_or(body)
        ))
    };
    let (pattern, used_pattern) = segment(body).ok_or_else(unterminated)?;
    let (replacement, used_replacement) =
        segment(&body[used_pattern..]).ok_or_else(unterminated)?;
    let mut used = used_pattern + used_replacement;
    let case = match body[used..].chars().next() {
        Some('L') => Case::Lower,
        Some('U') => Case::Upper,
        _ => Case::Keep,
    };
    if case != Case::Keep {
        used += 1;
    }
    let bad_regex = |e: regex::Error| {
        MtlsError::InvalidRules(format!(
            "rule pattern `{pattern}` is not a valid regex: {e}"
        ))
    };
    // Validate the pattern alone first, so wrapping it cannot change its meaning.
    let plain = Regex::new(pattern).map_err(bad_regex)?;
    let regex = Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(bad_regex)?;
    let replacement = parse_replacement(replacement, &plain)?;
    Ok((
        Rule::Rewrite {
            regex,
            replacement,
            case,
        },
        used,
    ))
}

/// Parses a Java-style replacement string against the regex's groups.
fn parse_replacement(text: &str, regex: &Regex) -> Result<Vec<Part>, MtlsError> {
    let groups = regex.captures_len() - 1;
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    let invalid = |why: &str| MtlsError::InvalidRules(format!("replacement `{text}`: {why}"));
    while let Some(c) = chars.next() {
        match c {
            '\\' => literal.push(chars.next().ok_or_else(|| invalid("ends with `\\`"))?),
            '$' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let first = d.to_digit(10).unwrap_or_default() as usize;
                    if first > groups {
                        // Kafka keeps a reference to a group that does not exist literally.
                        literal.push('$');
                        continue;
                    }
                    chars.next();
                    // Like Java, take more digits while they still name an existing group.
                    let mut number = first;
                    while let Some(next) = chars.peek().and_then(|c| c.to_digit(10)) {
                        let longer = number * 10 + next as usize;
                        if longer > groups {
                            break;
                        }
                        number = longer;
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Group(number));
                }
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(invalid("unterminated `${`")),
                        }
                    }
                    if !regex.capture_names().flatten().any(|n| n == name) {
                        return Err(invalid(&format!("no group named `{name}`")));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Named(name));
                }
                _ => {
                    return Err(invalid(
                        "`$` must be followed by a group number or `{name}`",
                    ))
                }
            },
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    fn cert(entries: Vec<(DnType, DnValue)>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        for (ty, value) in entries {
            dn.push(ty, value);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn utf8(s: &str) -> DnValue {
        DnValue::Utf8String(s.to_string())
    }

    const KAFKA_DOC_RULES: &str = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
        RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
        RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
        DEFAULT";

    #[test]
    fn subject_in_java_order_with_escaping() {
        let der = cert(vec![
            (
                DnType::CountryName,
                DnValue::PrintableString("US".try_into().unwrap()),
            ),
            (DnType::OrganizationName, utf8("Acme, Inc.")),
            (DnType::OrganizationalUnitName, utf8("ServiceUsers")),
            (DnType::CommonName, utf8("app-1")),
        ]);
        assert_eq!(
            subject_dn(&der).unwrap(),
            r"CN=app-1,OU=ServiceUsers,O=Acme\, Inc.,C=US"
        );
    }

    #[test]
    fn all_keywords_and_special_characters() {
        let der = cert(vec![
            (
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                utf8("com"),
            ),
            (
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                utf8("u42"),
            ),
            (DnType::CustomDnType(vec![2, 5, 4, 9]), utf8("1 Main St")),
            (DnType::StateOrProvinceName, utf8("CA")),
            (DnType::LocalityName, utf8("San Jose")),
            (DnType::CommonName, utf8(" #a+b=c<d>e;f\"g\\h ")),
        ]);
        assert_eq!(
            subject_dn(&der).unwrap(),
            r#"CN=\ \#a\+b\=c\<d\>e\;f\"g\\h\ ,L=San Jose,ST=CA,STREET=1 Main St,UID=u42,DC=com"#
        );
    }

    #[test]
    fn unknown_types_and_non_string_values_are_hex() {
        let der = cert(vec![
            (
                DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                DnValue::Ia5String("a@b".try_into().unwrap()),
            ),
            (
                DnType::CommonName,
                DnValue::UniversalString("x".try_into().unwrap()),
            ),
        ]);
        assert_eq!(
            subject_dn(&der).unwrap(),
            "CN=#1c0400000078,1.2.840.113549.1.9.1=#1603614062"
        );
    }

    #[test]
    fn string_types_and_multi_valued_rdns() {
        // SEQUENCE { SET { CN=BMP"Zoë" } , SET { O=T61"caf\xe9", OU=IA5"x" } }
        let bmp: &[u8] = &[0x00, b'Z', 0x00, b'o', 0x00, 0xeb];
        let mut atv_cn = vec![0x30, 13, 0x06, 3, 0x55, 0x04, 0x03, 0x1e, 6];
        atv_cn.extend_from_slice(bmp);
        let atv_o: &[u8] = &[
            0x30, 11, 0x06, 3, 0x55, 0x04, 0x0a, 0x14, 4, b'c', b'a', b'f', 0xe9,
        ];
        let atv_ou: &[u8] = &[0x30, 8, 0x06, 3, 0x55, 0x04, 0x0b, 0x16, 1, b'x'];
        let mut set1 = vec![0x31, atv_cn.len() as u8];
        set1.extend_from_slice(&atv_cn);
        let mut set2 = vec![0x31, (atv_o.len() + atv_ou.len()) as u8];
        set2.extend_from_slice(atv_o);
        set2.extend_from_slice(atv_ou);
        let mut name = vec![0x30, (set1.len() + set2.len()) as u8];
        name.extend_from_slice(&set1);
        name.extend_from_slice(&set2);
        let (_, parsed) = X509Name::from_der(&name).unwrap();
        assert_eq!(format_name(&parsed), "O=café+OU=x,CN=Zoë");
    }

    #[test]
    fn escape_rules() {
        assert_eq!(escape_value("plain"), "plain");
        assert_eq!(escape_value("  x  "), r"\ \ x\ \ ");
        assert_eq!(escape_value("   "), r"\ \ \ ");
        assert_eq!(escape_value("a\0b"), r"a\00b");
        assert_eq!(escape_value("#x#"), r"\#x\#");
        assert_eq!(escape_value(""), "");
    }

    #[test]
    fn bad_certificates_are_errors() {
        assert!(subject_dn(b"").is_err());
        assert!(subject_dn(b"not a certificate").is_err());
        let mut der = cert(vec![(DnType::CommonName, utf8("x"))]);
        der.push(0);
        assert!(subject_dn(&der).is_err());
        let der = cert(vec![(DnType::CommonName, utf8("x"))]);
        for cut in [1, der.len() / 2, der.len() - 1] {
            assert!(subject_dn(&der[..cut]).is_err());
        }
    }

    #[test]
    fn kafka_documentation_rules() {
        let mapper = PrincipalMapper::parse(KAFKA_DOC_RULES).unwrap();
        assert_eq!(mapper.rules.len(), 4);
        assert_eq!(
            mapper
                .map("CN=kafka-monitor,OU=ServiceUsers,O=Apache,L=US")
                .as_deref(),
            Some("kafka-monitor")
        );
        assert_eq!(
            mapper
                .map("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=California,C=US")
                .as_deref(),
            Some("duke@javasoft")
        );
        assert_eq!(
            mapper.map("OU=JavaSoft,CN=Duke.Example,O=Sun").as_deref(),
            Some("duke.example")
        );
        assert_eq!(
            mapper.map("OU=JavaSoft,O=Sun").as_deref(),
            Some("OU=JavaSoft,O=Sun")
        );
    }

    #[test]
    fn rules_from_a_real_certificate() {
        let der = cert(vec![
            (DnType::CountryName, utf8("US")),
            (DnType::OrganizationName, utf8("Acme, Inc.")),
            (DnType::OrganizationalUnitName, utf8("ServiceUsers")),
            (DnType::CommonName, utf8("billing")),
        ]);
        let dn = subject_dn(&der).unwrap();
        let mapper = PrincipalMapper::parse(KAFKA_DOC_RULES).unwrap();
        assert_eq!(mapper.map(&dn).as_deref(), Some("billing"));
        // A regex with an escaped comma in it, matching the escaped organisation.
        let mapper =
            PrincipalMapper::parse(r"RULE:^CN=([^,]+),.*O=Acme\\, Inc\.,C=US$/$1/U").unwrap();
        assert_eq!(mapper.map(&dn).as_deref(), Some("BILLING"));
    }

    #[test]
    fn rule_matching_is_whole_dn_and_first_match_wins() {
        let mapper = PrincipalMapper::parse("RULE:CN=(.*)/$1/,RULE:.*CN=(\\w+).*/x$1/").unwrap();
        // The first regex must match the whole DN, so it does not apply here.
        assert_eq!(mapper.map("OU=a,CN=bob,O=z").as_deref(), Some("xbob"));
        assert_eq!(mapper.map("CN=bob").as_deref(), Some("bob"));
        assert_eq!(mapper.map("nothing"), None);
    }

    #[test]
    fn default_and_no_match() {
        assert_eq!(
            PrincipalMapper::default_rules().map("CN=a,O=b").as_deref(),
            Some("CN=a,O=b")
        );
        let mapper = PrincipalMapper::parse("RULE:^CN=(.*)$/$1/").unwrap();
        assert_eq!(mapper.map("O=x"), None);
        // An empty result counts as no match.
        let mapper = PrincipalMapper::parse("RULE:^CN=(.*)$/$1/,DEFAULT").unwrap();
        assert_eq!(mapper.map("CN=").as_deref(), Some("CN="));
    }

    #[test]
    fn rule_syntax() {
        // Whitespace, empty entries, and commas inside pattern and replacement.
        let mapper =
            PrincipalMapper::parse("  RULE:^CN=(.*?),O=(.*)$/$2,$1/ , ,DEFAULT ,").unwrap();
        assert_eq!(mapper.rules.len(), 2);
        assert_eq!(mapper.map("CN=a,O=b").as_deref(), Some("b,a"));
        // An escaped slash in the pattern and a literal slash in the replacement.
        let mapper = PrincipalMapper::parse(r"RULE:^CN=(.*)\/(.*)$/$1\/$2/").unwrap();
        assert_eq!(mapper.map("CN=x/y").as_deref(), Some("x/y"));
        // Escaped dollar and a reference to a missing group stay literal.
        let mapper = PrincipalMapper::parse(r"RULE:^CN=(.*)$/\$$1$2/").unwrap();
        assert_eq!(mapper.map("CN=x").as_deref(), Some("$x$2"));
        // Multi-digit references stop at the last existing group; $0 is the whole match.
        let mapper = PrincipalMapper::parse(r"RULE:^(C)(N)=(.*)$/$12|$0/").unwrap();
        assert_eq!(mapper.map("CN=q").as_deref(), Some("C2|CN=q"));
        // Named groups.
        let mapper = PrincipalMapper::parse(r"RULE:^CN=(?P<user>\w+)$/u-${user}/").unwrap();
        assert_eq!(mapper.map("CN=ann").as_deref(), Some("u-ann"));
        // Upper-casing.
        let mapper = PrincipalMapper::parse("RULE:^CN=(.*)$/$1/U").unwrap();
        assert_eq!(mapper.map("CN=ann").as_deref(), Some("ANN"));
    }

    #[test]
    fn invalid_rules() {
        for bad in [
            "",
            "   ",
            ",",
            "DEFAULTX",
            "DEFAULT x",
            "FOO",
            "RULE:",
            "RULE:abc",
            "RULE:abc/def",
            "RULE:abc/def/X",
            "RULE:abc/def/Lx,DEFAULT",
            "RULE:(unclosed/x/",
            "RULE:a/$/",
            "RULE:a/${nope}/",
            "RULE:(?P<n>a)/${n/",
            "RULE:a/x\\/",
            "RULE:a\\",
            "DEFAULT,RULE:a/b",
        ] {
            assert!(PrincipalMapper::parse(bad).is_err(), "accepted {bad:?}");
        }
        let err = PrincipalMapper::parse("RULE:(x/y/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("(x"), "{err}");
    }
}
