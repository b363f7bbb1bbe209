//! The device key in a softhsm2 token, in process: generated inside and
//! never extractable, signing standard Ed25519, refusing a wrong PIN or a
//! label in use, and logging in again when the token drops its login.
//!
//! One test in this binary: softhsm2 reads `SOFTHSM2_CONF` once, when the
//! module is first initialised in the process.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use fieldseal_agent::devicekey::pkcs11::{generate, TokenError, TokenSigner};
use fieldseal_agent::devicekey::softhsm::SoftHsm;
use fieldseal_agent::devicekey::{DeviceKey, StoreError};
use fieldseal_proto::identity::Signer;

#[test]
fn a_key_generated_in_the_token_stays_there_and_signs_standard_ed25519() {
    let hsm = SoftHsm::new("unit").expect("softhsm2 is not installed: run scripts/install-deps.sh");
    let (var, conf) = hsm.env();
    // Before the module is first loaded, and the only test here.
    std::env::set_var(var, conf);
    let t = hsm.key("device");
    let pin = || cryptoki::types::AuthPin::from(hsm.pin.clone());

    let public = generate(&t, &pin()).unwrap();
    let e = generate(&t, &pin()).unwrap_err();
    assert!(matches!(e, TokenError::LabelTaken { .. }), "{e}");

    let s = TokenSigner::open(&t, pin()).unwrap();
    assert_eq!(s.public_key(), public);
    assert!(s.key_stays_inside().unwrap());
    // Pure Ed25519 (RFC 8032) is deterministic and verifies under the
    // public key with any implementation: here ed25519-dalek's strict check.
    let sig = s.try_sign(b"entry bytes").unwrap();
    public.verify_strict(b"entry bytes", &sig).unwrap();
    assert_eq!(s.try_sign(b"entry bytes").unwrap(), sig);

    // Another session of this process, as a second program on the token
    // would see it: the private key's value cannot be read.
    let ctx = Pkcs11::new(&hsm.module).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "unit")
        .unwrap();
    let other = ctx.open_ro_session(slot).unwrap();
    // The login is the process's, on every session: this one has it too.
    assert!(matches!(
        other.login(cryptoki::session::UserType::User, Some(&pin())),
        Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::UserAlreadyLoggedIn,
            _
        ))
    ));
    let private = other
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"device".to_vec()),
        ])
        .unwrap();
    assert_eq!(private.len(), 1);
    let attrs = other
        .get_attributes(
            private[0],
            &[
                AttributeType::Value,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
            ],
        )
        .unwrap();
    assert!(
        !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
        "{attrs:?}"
    );
    assert!(
        attrs.contains(&Attribute::NeverExtractable(true)),
        "{attrs:?}"
    );
    assert!(
        attrs.contains(&Attribute::AlwaysSensitive(true)),
        "{attrs:?}"
    );

    // The login lapses for the whole process (as after a token reset): the
    // signer logs in again with the PIN that opened it, once.
    other.logout().unwrap();
    drop(other);
    let after = s.try_sign(b"after a lost login").unwrap();
    public.verify_strict(b"after a lost login", &after).unwrap();

    // The one signer, as the chain writer and the TLS client share it.
    let key = DeviceKey::new(s);
    let shared = key.clone();
    let h = std::thread::spawn(move || shared.try_sign(b"sync thread").unwrap());
    let mine = key.try_sign(b"writer thread").unwrap();
    public.verify_strict(b"writer thread", &mine).unwrap();
    public
        .verify_strict(b"sync thread", &h.join().unwrap())
        .unwrap();

    // A wrong PIN, and a token that is not there, say so. (With no
    // session left open: a process logged in takes any PIN as logged in.)
    drop(key);
    let e =
        TokenSigner::open(&t, cryptoki::types::AuthPin::from("000000".to_string())).unwrap_err();
    assert!(matches!(e, TokenError::WrongPin(_)), "{e}");
    let mut elsewhere = t.clone();
    elsewhere.token = "nope".into();
    let e = TokenSigner::open(&elsewhere, pin())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no token labelled `nope`") && e.contains("`unit`"),
        "{e}"
    );
    let e: StoreError = TokenSigner::open(&hsm.key("other"), pin())
        .unwrap_err()
        .into();
    assert!(
        e.to_string()
            .contains("holds no Ed25519 private key labelled `other`"),
        "{e}"
    );
}
