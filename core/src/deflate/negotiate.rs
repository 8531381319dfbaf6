//! permessage-deflate negotiation (RFC 7692 section 7.1): a client's offer, a server's choice among
//! offers, and a client's check of the answer.

use std::fmt;

use super::{DeflateConfig, DeflateParams, MAX_WINDOW_BITS, PerMessageDeflate};
use crate::handshake::ExtensionOffer;

/// The extension's registered name (RFC 7692 section 7).
pub(crate) const EXTENSION_NAME: &str = "permessage-deflate";

/// Why a client refuses a server's permessage-deflate answer (RFC 7692 section 7.1: "the client
/// MUST _Fail the WebSocket Connection_" on an answer it cannot accept).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateResponseError {
    /// The `Sec-WebSocket-Extensions` header does not follow RFC 6455 section 9.1.
    Malformed,
    /// The answer names permessage-deflate more than once (RFC 6455 section 9.1).
    DuplicateExtension,
    /// A parameter RFC 7692 section 7.1 does not define; it is named.
    UnknownParameter(String),
    /// A parameter appears twice (RFC 7692 section 7.1); it is named.
    DuplicateParameter(String),
    /// A parameter's value is missing, unexpected, or not a window size of 8 to 15 written
    /// without leading zeros (RFC 7692 section 7.1.2); the parameter is named.
    InvalidValue(String),
    /// `client_max_window_bits` answered though the client did not offer it (RFC 7692 section
    /// 7.1.2.2).
    UnofferedClientMaxWindowBits,
    /// `client_max_window_bits` larger than the value the client offered (RFC 7692 section
    /// 7.1.2.2).
    ClientWindowTooLarge {
        /// The value offered.
        offered: u8,
        /// The value answered.
        answered: u8,
    },
    /// `server_max_window_bits` missing though the client asked for it (RFC 7692 section
    /// 7.1.2.1).
    MissingServerMaxWindowBits,
    /// `server_max_window_bits` larger than the client asked for (RFC 7692 section 7.1.2.1).
    ServerWindowTooLarge {
        /// The value the client asked for.
        offered: u8,
        /// The value answered.
        answered: u8,
    },
    /// `server_no_context_takeover` missing though the client asked for it (RFC 7692 section
    /// 7.1.1.1).
    MissingServerNoContextTakeover,
}

impl fmt::Display for DeflateResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed Sec-WebSocket-Extensions header"),
            Self::DuplicateExtension => f.write_str("permessage-deflate answered more than once"),
            Self::UnknownParameter(name) => write!(f, "unknown permessage-deflate parameter {name:?}"),
            Self::DuplicateParameter(name) => write!(f, "repeated permessage-deflate parameter {name:?}"),
            Self::InvalidValue(name) => write!(f, "invalid value for permessage-deflate parameter {name:?}"),
            Self::UnofferedClientMaxWindowBits => f.write_str("client_max_window_bits answered but not offered"),
            Self::ClientWindowTooLarge { offered, answered } => {
                write!(f, "client_max_window_bits={answered} exceeds the {offered} offered")
            }
            Self::MissingServerMaxWindowBits => f.write_str("server_max_window_bits asked for but not answered"),
            Self::ServerWindowTooLarge { offered, answered } => {
                write!(f, "server_max_window_bits={answered} exceeds the {offered} asked for")
            }
            Self::MissingServerNoContextTakeover => {
                f.write_str("server_no_context_takeover asked for but not answered")
            }
        }
    }
}

impl std::error::Error for DeflateResponseError {}

/// The parameters of one permessage-deflate offer or answer, as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Written {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses the parameters of one permessage-deflate element strictly: each parameter at most
/// once, known names only (compared case-insensitively), `server_max_window_bits` with a value,
/// `client_max_window_bits` with or without one, the `*_no_context_takeover` without (RFC 7692
/// section 7.1).
fn parse_params(params: &[(String, Option<String>)]) -> Result<Written, DeflateResponseError> {
    let mut written = Written::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let index = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|known| known.eq_ignore_ascii_case(name))
        .ok_or_else(|| DeflateResponseError::UnknownParameter(name.clone()))?;
        if std::mem::replace(&mut seen[index], true) {
            return Err(DeflateResponseError::DuplicateParameter(name.clone()));
        }
        let invalid = || DeflateResponseError::InvalidValue(name.clone());
        match (index, value.as_deref()) {
            (0, None) => written.server_no_context_takeover = true,
            (1, None) => written.client_no_context_takeover = true,
            (2, Some(value)) => written.server_max_window_bits = Some(window_bits(value).ok_or_else(invalid)?),
            (3, None) => written.client_max_window_bits = Some(None),
            (3, Some(value)) => written.client_max_window_bits = Some(Some(window_bits(value).ok_or_else(invalid)?)),
            _ => return Err(invalid()),
        }
    }
    Ok(written)
}

/// A window size as RFC 7692 section 7.1.2 writes it: a decimal integer from 8 to 15, without
/// leading zeros (`08` is refused).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// The `Sec-WebSocket-Extensions` value a client sends for `config` (RFC 7692 section 7.1).
pub(crate) fn offer_value(config: &DeflateConfig) -> String {
    let mut value = EXTENSION_NAME.to_owned();
    if config.client_asks_server_no_context_takeover() {
        value.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        value.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = config.server_max_window_bits {
        value.push_str(&format!("; server_max_window_bits={bits}"));
    }
    match config.client_max_window_bits {
        None => {}
        Some(MAX_WINDOW_BITS) => value.push_str("; client_max_window_bits"),
        Some(bits) => value.push_str(&format!("; client_max_window_bits={bits}")),
    }
    value
}

/// A server's choice among a client's `offers` (RFC 7692 section 5.1): the first
/// permessage-deflate offer it can accept, in the client's order, as the agreed parameters and
/// the `Sec-WebSocket-Extensions` value to answer with. An offer with an unknown or repeated
/// parameter or an invalid value is declined, and the next one is tried. `None` when no offer is
/// acceptable, or when `config` is invalid.
pub(crate) fn negotiate_offers(
    config: &DeflateConfig,
    offers: &[ExtensionOffer],
) -> Option<(PerMessageDeflate, String)> {
    config.validate().ok()?;
    offers
        .iter()
        .filter(|offer| offer.name().eq_ignore_ascii_case(EXTENSION_NAME))
        .find_map(|offer| parse_params(offer.params()).ok())
        .map(|offer| accept(config, offer))
}

/// The server's answer to one valid offer.
fn accept(config: &DeflateConfig, offer: Written) -> (PerMessageDeflate, String) {
    let ours = |bits: Option<u8>| bits.unwrap_or(MAX_WINDOW_BITS);
    let server_window = ours(offer.server_max_window_bits).min(ours(config.server_max_window_bits));
    // Section 7.1.2.2: without the parameter in the offer, the server cannot limit the client.
    let client_window = match offer.client_max_window_bits {
        None => MAX_WINDOW_BITS,
        Some(offered) => ours(offered).min(ours(config.client_max_window_bits)),
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover || config.server_answers_no_context_takeover(),
        client_no_context_takeover: offer.client_no_context_takeover || config.client_no_context_takeover,
        server_max_window_bits: server_window,
        client_max_window_bits: client_window,
    };
    let mut answer = EXTENSION_NAME.to_owned();
    if params.server_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    // Section 7.1.2.1: an offer with the parameter is accepted by answering it, with the same or
    // a smaller value; without it, the server may still announce its own limit.
    if offer.server_max_window_bits.is_some() || server_window < MAX_WINDOW_BITS {
        answer.push_str(&format!("; server_max_window_bits={server_window}"));
    }
    if offer.client_max_window_bits.is_some() && client_window < MAX_WINDOW_BITS {
        answer.push_str(&format!("; client_max_window_bits={client_window}"));
    }
    (PerMessageDeflate { params, config: config.clone() }, answer)
}

/// A client's check of the server's `Sec-WebSocket-Extensions` answer (`answers`, every element
/// in order) against what `config` offered (RFC 7692 section 7.1). `Ok(None)` when the server
/// declined. Extensions other than permessage-deflate are left to the caller, which offered none.
pub(crate) fn parse_answer(
    config: &DeflateConfig,
    answers: &[ExtensionOffer],
) -> Result<Option<PerMessageDeflate>, DeflateResponseError> {
    let mut found = None;
    for answer in answers.iter().filter(|a| a.name().eq_ignore_ascii_case(EXTENSION_NAME)) {
        if found.is_some() {
            return Err(DeflateResponseError::DuplicateExtension);
        }
        found = Some(parse_params(answer.params())?);
    }
    let Some(answer) = found else { return Ok(None) };
    let server_window = match (config.server_max_window_bits, answer.server_max_window_bits) {
        (Some(_), None) => return Err(DeflateResponseError::MissingServerMaxWindowBits),
        (Some(offered), Some(answered)) if answered > offered => {
            return Err(DeflateResponseError::ServerWindowTooLarge { offered, answered });
        }
        (_, answered) => answered.unwrap_or(MAX_WINDOW_BITS),
    };
    let client_window = match (config.client_max_window_bits, answer.client_max_window_bits) {
        (None, Some(_)) => return Err(DeflateResponseError::UnofferedClientMaxWindowBits),
        (_, Some(None)) => return Err(DeflateResponseError::InvalidValue("client_max_window_bits".into())),
        (Some(offered), Some(Some(answered))) if answered > offered => {
            return Err(DeflateResponseError::ClientWindowTooLarge { offered, answered });
        }
        (_, Some(Some(answered))) => answered,
        (offered, None) => offered.unwrap_or(MAX_WINDOW_BITS),
    };
    if config.client_asks_server_no_context_takeover() && !answer.server_no_context_takeover {
        return Err(DeflateResponseError::MissingServerNoContextTakeover);
    }
    let params = DeflateParams {
        server_no_context_takeover: answer.server_no_context_takeover,
        // Section 7.1.1.2: the client may drop its context whether or not the server asked.
        client_no_context_takeover: answer.client_no_context_takeover || config.client_no_context_takeover,
        server_max_window_bits: server_window,
        client_max_window_bits: client_window,
    };
    Ok(Some(PerMessageDeflate { params, config: config.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::extensions::parse_offers;

    fn offers(header: &str) -> Vec<ExtensionOffer> {
        parse_offers([header.as_bytes()].into_iter()).expect("well-formed header")
    }

    fn server(config: &DeflateConfig, header: &str) -> Option<(DeflateParams, String)> {
        negotiate_offers(config, &offers(header)).map(|(d, answer)| (d.params, answer))
    }

    /// A server or client with no policy of its own: it keeps its context and limits no window.
    fn open() -> DeflateConfig {
        DeflateConfig::default()
            .server_max_window_bits(None)
            .client_max_window_bits(None)
            .server_no_context_takeover(false)
    }

    fn params(snct: bool, cnct: bool, smwb: u8, cmwb: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: smwb,
            client_max_window_bits: cmwb,
        }
    }

    #[test]
    fn server_accepts_a_bare_offer() {
        assert_eq!(
            server(&open(), "permessage-deflate"),
            Some((params(false, false, 15, 15), "permessage-deflate".into()))
        );
    }

    #[test]
    fn server_accepts_each_parameter_alone() {
        let cases = [
            (
                "server_no_context_takeover",
                params(true, false, 15, 15),
                "permessage-deflate; server_no_context_takeover",
            ),
            (
                "client_no_context_takeover",
                params(false, true, 15, 15),
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                "server_max_window_bits=10",
                params(false, false, 10, 15),
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "server_max_window_bits=15",
                params(false, false, 15, 15),
                "permessage-deflate; server_max_window_bits=15",
            ),
            (
                "server_max_window_bits=\"8\"",
                params(false, false, 8, 15),
                "permessage-deflate; server_max_window_bits=8",
            ),
            ("client_max_window_bits", params(false, false, 15, 15), "permessage-deflate"),
            ("client_max_window_bits=9", params(false, false, 15, 9), "permessage-deflate; client_max_window_bits=9"),
            ("CLIENT_MAX_WINDOW_BITS=9", params(false, false, 15, 9), "permessage-deflate; client_max_window_bits=9"),
        ];
        for (param, expected, answer) in cases {
            let got = server(&open(), &format!("permessage-deflate; {param}"));
            assert_eq!(got, Some((expected, answer.to_owned())), "{param}");
        }
    }

    #[test]
    fn server_accepts_every_parameter_combined() {
        let got = server(
            &open(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=11",
        );
        assert_eq!(
            got,
            Some((
                params(true, true, 9, 11),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=11"
                    .into()
            ))
        );
    }

    #[test]
    fn server_policy_lowers_windows_and_adds_no_context_takeover() {
        let config = DeflateConfig::default()
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(11))
            .server_no_context_takeover(true)
            .client_no_context_takeover(true);
        // The client's own asks, when smaller, win.
        assert_eq!(
            server(&config, "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8").unwrap().0,
            params(true, true, 9, 8)
        );
        // The server's limits apply to a client that offered client_max_window_bits without a value.
        let (p, answer) = server(&config, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p, params(true, true, 10, 11));
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=11"
        );
        // Without client_max_window_bits in the offer the client's window cannot be limited.
        let (p, answer) = server(&config, "permessage-deflate").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert!(!answer.contains("client_max_window_bits"));
    }

    #[test]
    fn server_declines_invalid_offers() {
        let invalid = [
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=-9",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=016",
            "permessage-deflate; server_no_context_takeover=true",
            "permessage-deflate; client_no_context_takeover=1",
            "x-webkit-deflate-frame",
        ];
        for header in invalid {
            assert_eq!(server(&open(), header), None, "{header}");
        }
    }

    #[test]
    fn server_takes_the_first_acceptable_offer_in_order() {
        let header = "permessage-deflate; server_max_window_bits=10, permessage-deflate";
        assert_eq!(server(&open(), header).unwrap().0.server_max_window_bits, 10);
        let header = "foo, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=16, \
                      permessage-deflate; client_max_window_bits=9, permessage-deflate";
        assert_eq!(server(&open(), header).unwrap().0, params(false, false, 15, 9));
    }

    #[test]
    fn server_with_invalid_config_declines_everything() {
        assert_eq!(server(&open().memory_level(0), "permessage-deflate"), None);
    }

    #[test]
    fn client_offer_writes_every_parameter() {
        assert_eq!(offer_value(&open()), "permessage-deflate");
        assert_eq!(
            offer_value(&DeflateConfig::default()),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        let all = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .client_max_window_bits(Some(15));
        assert_eq!(
            offer_value(&all),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits"
        );
        // What a client offers, a server with no policy of its own accepts as is.
        let (p, _) = server(&open(), &offer_value(&all)).unwrap();
        assert_eq!(p, params(true, true, 12, 15));
    }

    #[test]
    fn server_no_context_takeover_defaults_by_role() {
        let default = DeflateConfig::default();
        assert_eq!(default.server_no_context_takeover, None);
        // A client leaves it to the server: it does not ask, and takes either answer.
        assert!(!offer_value(&default).contains("server_no_context_takeover"));
        assert_eq!(
            client(&default, "permessage-deflate; server_max_window_bits=12"),
            Ok(Some(params(false, false, 12, 12)))
        );
        // A server answers it unasked.
        let (p, answer) = server(&default, "permessage-deflate").unwrap();
        assert!(p.server_no_context_takeover, "{answer}");
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover; server_max_window_bits=12");
        // Two ends at their defaults agree on what the server chose.
        let (p, answer) = server(&default, &offer_value(&default)).unwrap();
        assert_eq!(p, params(true, false, 12, 12));
        assert_eq!(client(&default, &answer), Ok(Some(p)));
    }

    #[test]
    fn server_no_context_takeover_set_applies_to_either_role() {
        let asked = DeflateConfig::default().server_no_context_takeover(true);
        assert_eq!(asked.server_no_context_takeover, Some(true));
        assert!(offer_value(&asked).starts_with("permessage-deflate; server_no_context_takeover;"));
        assert_eq!(
            client(&asked, "permessage-deflate; server_max_window_bits=12"),
            Err(DeflateResponseError::MissingServerNoContextTakeover)
        );
        let (p, _) = server(&asked, "permessage-deflate").unwrap();
        assert!(p.server_no_context_takeover);
        let keeps = DeflateConfig::default().server_no_context_takeover(false);
        assert!(!offer_value(&keeps).contains("server_no_context_takeover"));
        let (p, answer) = server(&keeps, "permessage-deflate").unwrap();
        assert!(!p.server_no_context_takeover, "{answer}");
        // Asked by the client, a server that would keep its context still answers it.
        let (p, _) = server(&keeps, "permessage-deflate; server_no_context_takeover").unwrap();
        assert!(p.server_no_context_takeover);
    }

    fn client(config: &DeflateConfig, header: &str) -> Result<Option<DeflateParams>, DeflateResponseError> {
        parse_answer(config, &offers(header)).map(|d| d.map(|d| d.params))
    }

    #[test]
    fn client_accepts_valid_answers() {
        // Asks the server for <= 12 bits, offers the client's 12.
        let config = DeflateConfig::default().server_no_context_takeover(false);
        assert_eq!(
            client(&config, "permessage-deflate; server_max_window_bits=12").unwrap(),
            Some(params(false, false, 12, 12))
        );
        assert_eq!(
            client(&config, "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10").unwrap(),
            Some(params(false, false, 9, 10))
        );
        // The server may add no-context-takeover for either side unasked (section 7.1.1).
        assert_eq!(
            client(
                &config,
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8"
            )
            .unwrap(),
            Some(params(true, true, 8, 12))
        );
        // Without asking, any server window is accepted.
        assert_eq!(
            client(&open(), "permessage-deflate; server_max_window_bits=10").unwrap(),
            Some(params(false, false, 10, 15))
        );
        // The client's own no-context-takeover stands whether answered or not.
        let config = open().client_no_context_takeover(true);
        assert_eq!(client(&config, "permessage-deflate").unwrap(), Some(params(false, true, 15, 15)));
    }

    #[test]
    fn client_accepts_a_decline() {
        assert_eq!(client(&DeflateConfig::default(), "foo"), Ok(None));
        assert_eq!(parse_answer(&DeflateConfig::default(), &[]), Ok(None));
    }

    #[test]
    fn client_refuses_answers_it_did_not_allow() {
        use DeflateResponseError as E;
        let cases: [(DeflateConfig, &str, E); 14] = [
            (open(), "permessage-deflate; client_max_window_bits=10", E::UnofferedClientMaxWindowBits),
            (
                open().client_max_window_bits(Some(15)),
                "permessage-deflate; client_max_window_bits",
                E::InvalidValue("client_max_window_bits".into()),
            ),
            (
                open().client_max_window_bits(Some(10)),
                "permessage-deflate; client_max_window_bits=11",
                E::ClientWindowTooLarge { offered: 10, answered: 11 },
            ),
            (DeflateConfig::default(), "permessage-deflate", E::MissingServerMaxWindowBits),
            (
                DeflateConfig::default(),
                "permessage-deflate; server_max_window_bits=13",
                E::ServerWindowTooLarge { offered: 12, answered: 13 },
            ),
            (open().server_no_context_takeover(true), "permessage-deflate", E::MissingServerNoContextTakeover),
            (open(), "permessage-deflate; mux", E::UnknownParameter("mux".into())),
            (
                open(),
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                E::DuplicateParameter("server_no_context_takeover".into()),
            ),
            (open(), "permessage-deflate; server_max_window_bits=7", E::InvalidValue("server_max_window_bits".into())),
            (open(), "permessage-deflate; server_max_window_bits=16", E::InvalidValue("server_max_window_bits".into())),
            (
                open(),
                "permessage-deflate; server_max_window_bits=abc",
                E::InvalidValue("server_max_window_bits".into()),
            ),
            (open(), "permessage-deflate; server_max_window_bits=08", E::InvalidValue("server_max_window_bits".into())),
            (
                open(),
                "permessage-deflate; server_no_context_takeover=1",
                E::InvalidValue("server_no_context_takeover".into()),
            ),
            (open(), "permessage-deflate, permessage-deflate", E::DuplicateExtension),
        ];
        for (config, header, expected) in cases {
            assert_eq!(client(&config, header), Err(expected), "{header}");
        }
    }
}
