//! A real OpenLDAP server (Debian `slapd`) for directory tests: one per test, on a free
//! port, with a schema that has the provisioning attribute (`defguardProvisioningConfig`,
//! PROTOCOL.md 1.2) and users loaded with `ldapadd`. Fails loudly, naming the install
//! command, when slapd is missing.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE_DN: &str = "dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PASSWORD: &str = "ldap-admin-secret";
pub const USERS_DN: &str = "ou=people,dc=example,dc=com";
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=com";
/// A service account that reads and writes like a sync would, under the size limit an
/// Active Directory has (1,000 entries per plain search), unlike the root DN.
pub const SYNC_DN: &str = "cn=sync,dc=example,dc=com";
pub const SYNC_PASSWORD: &str = "sync-secret";

const SCHEMA: &str = r#"
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'defguardProvisioningConfig'
    DESC 'Enrollment URL and token as JSON (PROTOCOL.md 1.2)'
    EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.2 NAME 'extensionAttribute4'
    DESC 'Active Directory style extension attribute'
    EQUALITY caseIgnoreMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.3 NAME 'userAccountControl'
    DESC 'Active Directory style account flags (bit 2: disabled)'
    EQUALITY integerMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'onrampProvisioning'
    DESC 'Holds the Onramp provisioning attributes'
    SUP top AUXILIARY MAY ( defguardProvisioningConfig $ extensionAttribute4 $ userAccountControl ) )
"#;

/// A running slapd, stopped on drop.
pub struct Slapd {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn need(bin: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{bin} not found: the directory tests need a real LDAP server; install it with: apt-get install -y slapd ldap-utils");
}

impl Slapd {
    /// Starts slapd with the schema and an empty `ou=people`.
    pub fn start() -> Slapd {
        Self::start_with(None)
    }

    /// Like `start`, with StartTLS offered on the same port with this certificate and key
    /// (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> Slapd {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Slapd {
        let slapd = need("slapd");
        need("ldapadd");
        let dir = tempfile::Builder::new().prefix("onramp-slapd-").tempdir().expect("slapd dir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        std::fs::write(d.join("onramp.schema"), SCHEMA).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include {schema}\n\
             pidfile {d}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             sizelimit size.soft=1000 size.hard=1000 size.prtotal=unlimited\n\
             database mdb\n\
             maxsize 268435456\n\
             suffix \"{BASE_DN}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {d}/db\n\
             index objectClass eq\n\
             index uid eq\n\
             index member eq\n\
             access to * by dn.exact=\"{SYNC_DN}\" write by * read\n",
            schema = d.join("onramp.schema").display(),
            d = d.display()
        );
        let conf = match tls {
            // Global options: they go before the database section.
            Some((cert, key)) => {
                format!("TLSCertificateFile {}\nTLSCertificateKeyFile {}\n{conf}", cert.display(), key.display())
            }
            None => conf,
        };
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&slapd)
            .args(["-f", d.join("slapd.conf").to_str().unwrap(), "-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {slapd}: {e}"));
        let mut s = Slapd { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = s.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("slapd exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "slapd did not start listening on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        s.add(&format!(
            "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {USERS_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {SYNC_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: sync\n\
             userPassword: {SYNC_PASSWORD}\n"
        ));
        s
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Adds LDIF entries as the admin.
    pub fn add(&self, ldif: &str) {
        let path = self.dir.path().join("add.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new(need("ldapadd"))
            .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "ldapadd failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Adds a person `uid=NAME` (with a password, and the attribute value when given).
    pub fn add_user(&self, uid: &str, password: &str, attribute: Option<(&str, &str)>) {
        let mut ldif = format!(
            "dn: uid={uid},{USERS_DN}\nobjectClass: inetOrgPerson\nobjectClass: onrampProvisioning\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.com\nuserPassword: {password}\n"
        );
        if let Some((name, value)) = attribute {
            ldif.push_str(&format!("{name}: {value}\n"));
        }
        self.add(&ldif);
    }

    /// Applies an LDIF change record list (`changetype: modify`, `delete`, ...) as the admin.
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("modify.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new(need("ldapmodify"))
            .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "ldapmodify failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A person with the usual inetOrgPerson attributes (`uid=NAME`, mail NAME@example.com,
    /// given name and surname), as LDIF for `add`.
    pub fn person_ldif(uid: &str, given: &str, sn: &str) -> String {
        format!(
            "dn: uid={uid},{USERS_DN}\nobjectClass: inetOrgPerson\nobjectClass: onrampProvisioning\n\
             uid: {uid}\ncn: {given} {sn}\ngivenName: {given}\nsn: {sn}\nmail: {uid}@example.com\n\
             userPassword: {uid}-pw\n\n"
        )
    }

    /// A `groupOfNames` under `ou=groups` with these member DNs (users or other groups).
    pub fn group_ldif(cn: &str, members: &[String]) -> String {
        let mut l = format!("dn: cn={cn},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {cn}\n");
        for m in members {
            l.push_str(&format!("member: {m}\n"));
        }
        l.push('\n');
        l
    }

    pub fn user_dn(uid: &str) -> String {
        format!("uid={uid},{USERS_DN}")
    }

    pub fn group_dn(cn: &str) -> String {
        format!("cn={cn},{GROUPS_DN}")
    }

    /// The attribute's value on `uid=NAME`, read with ldapsearch (independent of our client).
    pub fn read_attribute(&self, uid: &str, attribute: &str) -> Option<String> {
        let out = Command::new(need("ldapsearch"))
            .args([
                "-x",
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-b",
                &format!("uid={uid},{USERS_DN}"),
                "-s",
                "base",
                attribute,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "ldapsearch failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if !k.eq_ignore_ascii_case(attribute) {
                return None;
            }
            Some(match v.strip_prefix(':') {
                // base64 (ldapsearch encodes values it deems unsafe)
                Some(b64) => String::from_utf8(base64_decode(b64.trim())).unwrap_or_default(),
                None => v.trim().to_owned(),
            })
        })
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out =
        Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        });
    out.map(|o| o.stdout).unwrap_or_default()
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
