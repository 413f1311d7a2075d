#include "rpc/certs.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <set>

namespace shoal::rpc {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

constexpr int64_t kSecondsPerDay = 24 * 3600;
constexpr size_t kCertNameLengthMax = 64;
constexpr size_t kSerialBytes = 16;

// The reason of the oldest queued OpenSSL error ("unknown" if none); clears the queue.
std::string openssl_reason() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "OpenSSL error " + std::to_string(code);
}

std::string format_time(int64_t unix_s) {
  time_t t = static_cast<time_t>(unix_s);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char text[64];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return text;
}

int64_t asn1_to_unix(const ASN1_TIME* time) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string subject_of(X509* cert) {
  char text[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), text, sizeof(text));
  return text;
}

// Reads a whole PEM file. `what` names the flag ("--tls-cert") for messages.
// Private keys readable by every user are refused.
Result<std::string> read_pem_file(const std::string& path, std::string_view what, bool is_key) {
  std::string label = std::string(what) + " " + path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::invalid_argument(label + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::invalid_argument(label + ": not a regular file");
  }
  if (is_key && (st.st_mode & S_IROTH) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::invalid_argument(label + ": the private key is readable by every user (mode " +
                                    mode + "); run: chmod 600 " + path +
                                    " (or 640 with group shoal)");
  }
  if (static_cast<uint64_t>(st.st_size) > kPemFileBytesMax) {
    ::close(fd);
    return Status::invalid_argument(label + ": larger than " + std::to_string(kPemFileBytesMax) +
                                    " bytes; not a PEM file");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int saved = errno;
      ::close(fd);
      return Status::invalid_argument(
          label + ": cannot read: " + (n < 0 ? std::strerror(saved) : "file shrank while reading"));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return text;
}

BioPtr memory_bio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string pem_of(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

std::string pem_of(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// Every certificate in `text`, in order.
Result<std::vector<X509Ptr>> parse_certificates(const std::string& text, const std::string& label) {
  std::vector<X509Ptr> certs;
  BioPtr bio = memory_bio(text);
  ERR_clear_error();
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    certs.push_back(std::move(cert));
  }
  unsigned long error = ERR_peek_last_error();
  bool clean_end = error == 0 || (ERR_GET_LIB(error) == ERR_LIB_PEM &&
                                  ERR_GET_REASON(error) == PEM_R_NO_START_LINE);
  std::string reason = error != 0 ? openssl_reason() : "";
  if (!clean_end) return Status::invalid_argument(label + ": unreadable certificate: " + reason);
  if (certs.empty()) {
    if (text.find("PRIVATE KEY-----") != std::string::npos) {
      return Status::invalid_argument(
          label +
          ": holds a private key, not a certificate (are --tls-cert and "
          "--tls-key swapped?)");
    }
    return Status::invalid_argument(
        label + ": holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)");
  }
  return certs;
}

int no_password(char*, int, int, void*) { return 0; }

Result<PkeyPtr> parse_private_key(const std::string& text, const std::string& label) {
  if (text.find("ENCRYPTED") != std::string::npos) {
    return Status::invalid_argument(label +
                                    ": the private key is encrypted; shoal needs it unencrypted "
                                    "(openssl pkey -in KEY -out KEY.plain)");
  }
  if (text.find("PRIVATE KEY-----") == std::string::npos) {
    if (text.find("BEGIN CERTIFICATE") != std::string::npos) {
      return Status::invalid_argument(
          label +
          ": holds a certificate, not a private key (are --tls-cert and "
          "--tls-key swapped?)");
    }
    return Status::invalid_argument(
        label + ": holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)");
  }
  BioPtr bio = memory_bio(text);
  ERR_clear_error();
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (key == nullptr)
    return Status::invalid_argument(label + ": unreadable private key: " + openssl_reason());
  return key;
}

Status check_validity_period(X509* cert, const std::string& label, int64_t now_unix_s) {
  time_t now = static_cast<time_t>(now_unix_s);
  int64_t not_before = asn1_to_unix(X509_get0_notBefore(cert));
  int64_t not_after = asn1_to_unix(X509_get0_notAfter(cert));
  if (X509_cmp_time(X509_get0_notBefore(cert), &now) > 0) {
    return Status::invalid_argument(label + ": the certificate is not valid yet (valid from " +
                                    format_time(not_before) + "; is this machine's clock right?)");
  }
  if (X509_cmp_time(X509_get0_notAfter(cert), &now) < 0) {
    return Status::invalid_argument(label + ": the certificate expired on " +
                                    format_time(not_after) +
                                    "; make a new one (shoal certs issue)");
  }
  return {};
}

// Verifies `leaf` (with `intermediates`) against `cas`, or the system's trust
// store when `cas` is empty, at `now_unix_s`.
Status verify_chain(X509* leaf, const std::vector<X509Ptr>& intermediates,
                    const std::vector<X509Ptr>& cas, const std::string& label,
                    const std::string& ca_label, int64_t now_unix_s) {
  StorePtr store(X509_STORE_new());
  if (cas.empty()) {
    X509_STORE_set_default_paths(store.get());
  } else {
    for (const auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  }
  STACK_OF(X509)* chain = sk_X509_new_null();
  for (const auto& cert : intermediates) sk_X509_push(chain, cert.get());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain);
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), static_cast<time_t>(now_unix_s));
  int ok = X509_verify_cert(ctx.get());
  int error = X509_STORE_CTX_get_error(ctx.get());
  int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  X509* at = X509_STORE_CTX_get_current_cert(ctx.get());
  std::string at_subject = at != nullptr ? subject_of(at) : "";
  sk_X509_free(chain);  // the certificates belong to `intermediates`
  ERR_clear_error();
  if (ok == 1) return {};
  std::string reason = X509_verify_cert_error_string(error);
  std::string where = depth > 0 && !at_subject.empty() ? " (at " + at_subject + ")" : "";
  if (cas.empty()) {
    return Status::invalid_argument(
        label + ": the certificate is not trusted by this system's CAs: " + reason + where +
        "; pass --tls-ca with the CA that signed it");
  }
  return Status::invalid_argument(label + ": the certificate does not verify against " + ca_label +
                                  ": " + reason + where + " (was it signed by that CA?)");
}

Status check_usage_and_name(X509* leaf, const std::string& label, const std::string& server_name) {
  if (X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
    return Status::invalid_argument(
        label +
        ": the certificate cannot be used by a TLS server (its key usage or "
        "extendedKeyUsage lacks serverAuth); nodes are both clients and servers");
  }
  if (X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0) != 1) {
    return Status::invalid_argument(
        label +
        ": the certificate cannot be used by a TLS client (its key usage or "
        "extendedKeyUsage lacks clientAuth); nodes are both clients and servers");
  }
  if (X509_check_host(leaf, server_name.data(), server_name.size(), 0, nullptr) != 1) {
    ERR_clear_error();
    return Status::invalid_argument(
        label + ": the certificate does not carry the name '" + server_name +
        "' in its subjectAltName, which peers check (make node certificates "
        "with `shoal certs issue`, or set --tls-server-name)");
  }
  return {};
}

}  // namespace

Result<TlsMaterial> load_tls_material(const TlsFiles& files, int64_t now_unix_s) {
  if (files.cert_file.empty() || files.key_file.empty()) {
    return Status::invalid_argument("TLS needs both --tls-cert and --tls-key");
  }
  if (files.server_name.empty())
    return Status::invalid_argument("--tls-server-name must not be empty");
  TlsMaterial material;
  std::string cert_label = "--tls-cert " + files.cert_file;
  std::string key_label = "--tls-key " + files.key_file;
  std::string ca_label = "--tls-ca " + files.ca_file;

  auto cert_text = read_pem_file(files.cert_file, "--tls-cert", false);
  if (!cert_text.ok()) return cert_text.status();
  auto certs = parse_certificates(*cert_text, cert_label);
  if (!certs.ok()) return certs.status();
  auto key_text = read_pem_file(files.key_file, "--tls-key", true);
  if (!key_text.ok()) return key_text.status();
  auto key = parse_private_key(*key_text, key_label);
  if (!key.ok()) return key.status();

  std::vector<X509Ptr> cas;
  if (!files.ca_file.empty()) {
    auto ca_text = read_pem_file(files.ca_file, "--tls-ca", false);
    if (!ca_text.ok()) return ca_text.status();
    auto parsed = parse_certificates(*ca_text, ca_label);
    if (!parsed.ok()) return parsed.status();
    cas = std::move(*parsed);
    for (const auto& ca : cas) {
      if (X509_check_ca(ca.get()) == 0) {
        return Status::invalid_argument(
            ca_label + ": " + subject_of(ca.get()) +
            " is not a CA certificate; pass the certificate of the CA that "
            "signs the nodes' certificates (ca.crt)");
      }
      material.ca_pems.push_back(pem_of(ca.get()));
    }
  }

  X509* leaf = (*certs)[0].get();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    ERR_clear_error();
    return Status::invalid_argument(
        key_label + ": the private key does not belong to the certificate in " + files.cert_file);
  }
  SHOAL_RETURN_IF_ERROR(check_validity_period(leaf, cert_label, now_unix_s));
  std::vector<X509Ptr> intermediates;
  for (size_t i = 1; i < certs->size(); i++) intermediates.push_back(std::move((*certs)[i]));
  SHOAL_RETURN_IF_ERROR(verify_chain(leaf, intermediates, cas, cert_label, ca_label, now_unix_s));
  SHOAL_RETURN_IF_ERROR(check_usage_and_name(leaf, cert_label, files.server_name));

  material.cert_pem = pem_of(leaf);
  for (const auto& cert : intermediates) material.cert_pem += pem_of(cert.get());
  material.key_pem = pem_of(key->get());
  material.not_after_unix_s = asn1_to_unix(X509_get0_notAfter(leaf));
  int64_t left_s = material.not_after_unix_s - now_unix_s;
  if (left_s < kCertExpiryWarningS) {
    material.warnings.push_back(cert_label + ": the certificate expires on " +
                                format_time(material.not_after_unix_s) + " (in " +
                                std::to_string(left_s / kSecondsPerDay) +
                                " days); make a new one (shoal certs issue) and restart the node");
  }
  return material;
}

// ---- making certificates ------------------------------------------------------

namespace {

Result<PkeyPtr> new_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return Status::internal("cannot generate a P-256 key: " + openssl_reason());
  return key;
}

Status add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (extension == nullptr) {
    return Status::invalid_argument("cannot add " + std::string(OBJ_nid2sn(nid)) + " = " + value +
                                    ": " + openssl_reason());
  }
  X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
  return {};
}

bool is_ip_address(const std::string& name) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, name.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, name.c_str(), buffer) == 1;
}

bool is_dns_name(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '*')
      return false;
  }
  return true;
}

// A certificate with a fresh key, serial and validity, not yet signed.
Result<X509Ptr> new_certificate(EVP_PKEY* key, const std::string& common_name,
                                int64_t not_before_unix_s, int64_t not_after_unix_s) {
  if (not_after_unix_s <= not_before_unix_s) {
    return Status::invalid_argument("a certificate must end after it starts");
  }
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial[kSerialBytes];
  if (RAND_bytes(serial, sizeof(serial)) != 1)
    return Status::internal("no random bytes for a serial number");
  serial[0] &= 0x7f;  // positive
  BignumPtr bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(not_before_unix_s));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(not_after_unix_s));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("shoal"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

Status write_new_file(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::io_error("cannot create " + path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, content.data(), content.size());
  bool ok = n == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Status::io_error("cannot write " + path + ": " + std::strerror(saved));
  }
  return {};
}

Status require_absent(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) {
    return Status::already_exists(path + " already exists; remove it or choose another name");
  }
  return {};
}

Status write_pair(const std::string& dir, const std::string& stem, const PemPair& pair) {
  SHOAL_RETURN_IF_ERROR(write_new_file(dir + "/" + stem + ".key", pair.key_pem, 0600));
  return write_new_file(dir + "/" + stem + ".crt", pair.cert_pem, 0644);
}

int64_t days_from(int64_t now_unix_s, uint32_t days) {
  return now_unix_s + static_cast<int64_t>(days) * kSecondsPerDay;
}

Status check_days(uint32_t days) {
  if (days == 0 || days > kCertValidityDaysMax) {
    return Status::invalid_argument("--days must be between 1 and " +
                                    std::to_string(kCertValidityDaysMax));
  }
  return {};
}

}  // namespace

bool is_valid_cert_name(std::string_view name) {
  if (name.empty() || name.size() > kCertNameLengthMax || name.front() == '.') return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
      return false;
  }
  return true;
}

Result<PemPair> make_ca(const std::string& common_name, int64_t not_before_unix_s,
                        int64_t not_after_unix_s) {
  auto key = new_key();
  if (!key.ok()) return key.status();
  auto cert = new_certificate(key->get(), common_name, not_before_unix_s, not_after_unix_s);
  if (!cert.ok()) return cert.status();
  X509* x = cert->get();
  X509_set_issuer_name(x, X509_get_subject_name(x));
  SHOAL_RETURN_IF_ERROR(add_extension(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, x, NID_key_usage, "critical,keyCertSign,cRLSign"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, x, NID_subject_key_identifier, "hash"));
  if (X509_sign(x, key->get(), EVP_sha256()) == 0) {
    return Status::internal("cannot sign the CA certificate: " + openssl_reason());
  }
  return PemPair{pem_of(x), pem_of(key->get())};
}

Result<PemPair> issue_certificate(const PemPair& ca, const CertificateRequest& request) {
  auto ca_certs = parse_certificates(ca.cert_pem, "CA certificate");
  if (!ca_certs.ok()) return ca_certs.status();
  auto ca_key = parse_private_key(ca.key_pem, "CA key");
  if (!ca_key.ok()) return ca_key.status();
  X509* ca_cert = (*ca_certs)[0].get();
  if (X509_check_private_key(ca_cert, ca_key->get()) != 1) {
    ERR_clear_error();
    return Status::invalid_argument("the CA key does not belong to the CA certificate");
  }
  std::string san;
  for (const auto& name : request.names) {
    std::string entry;
    if (is_ip_address(name)) {
      entry = "IP:" + name;
    } else if (is_dns_name(name)) {
      entry = "DNS:" + name;
    } else {
      return Status::invalid_argument("'" + name + "' is neither a DNS name nor an IP address");
    }
    san += (san.empty() ? "" : ",") + entry;
  }
  if (san.empty()) return Status::invalid_argument("a node certificate needs at least one name");

  auto key = new_key();
  if (!key.ok()) return key.status();
  auto cert = new_certificate(key->get(), request.common_name, request.not_before_unix_s,
                              request.not_after_unix_s);
  if (!cert.ok()) return cert.status();
  X509* x = cert->get();
  X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
  SHOAL_RETURN_IF_ERROR(add_extension(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, ca_cert, NID_key_usage, "critical,digitalSignature"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, ca_cert, NID_ext_key_usage, "serverAuth,clientAuth"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, ca_cert, NID_subject_key_identifier, "hash"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, ca_cert, NID_authority_key_identifier, "keyid:always"));
  SHOAL_RETURN_IF_ERROR(add_extension(x, ca_cert, NID_subject_alt_name, san));
  if (X509_sign(x, ca_key->get(), EVP_sha256()) == 0) {
    return Status::internal("cannot sign the certificate: " + openssl_reason());
  }
  return PemPair{pem_of(x), pem_of(key->get())};
}

namespace {

Result<PemPair> issue_node(const PemPair& ca, const std::string& node_name,
                           const std::vector<std::string>& extra_names, uint32_t days,
                           int64_t now_unix_s) {
  CertificateRequest request;
  request.common_name = node_name;
  request.names.push_back(std::string(kTlsNodeName));
  if (is_ip_address(node_name) || is_dns_name(node_name)) request.names.push_back(node_name);
  for (const auto& name : extra_names) request.names.push_back(name);
  // A minute of slack for peers whose clocks are slightly behind.
  request.not_before_unix_s = now_unix_s - 60;
  request.not_after_unix_s = days_from(now_unix_s, days);
  auto ca_certs = parse_certificates(ca.cert_pem, "CA certificate");
  if (!ca_certs.ok()) return ca_certs.status();
  int64_t ca_not_after = asn1_to_unix(X509_get0_notAfter((*ca_certs)[0].get()));
  if (request.not_after_unix_s > ca_not_after) request.not_after_unix_s = ca_not_after;
  return issue_certificate(ca, request);
}

}  // namespace

Status init_cert_dir(const std::string& dir, const std::vector<std::string>& node_names,
                     uint32_t days, int64_t now_unix_s) {
  SHOAL_RETURN_IF_ERROR(check_days(days));
  if (node_names.empty()) return Status::invalid_argument("name at least one node");
  std::set<std::string> seen;
  for (const auto& name : node_names) {
    if (!is_valid_cert_name(name) || name == "ca") {
      return Status::invalid_argument(
          "node name '" + name + "': use letters, digits, '.', '-' or '_' (at most 64, not 'ca')");
    }
    if (!seen.insert(name).second)
      return Status::invalid_argument("node name '" + name + "' given twice");
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::io_error("cannot create directory " + dir + ": " + std::strerror(errno));
  }
  SHOAL_RETURN_IF_ERROR(require_absent(dir + "/ca.key"));
  SHOAL_RETURN_IF_ERROR(require_absent(dir + "/ca.crt"));
  for (const auto& name : node_names) {
    SHOAL_RETURN_IF_ERROR(require_absent(dir + "/" + name + ".key"));
    SHOAL_RETURN_IF_ERROR(require_absent(dir + "/" + name + ".crt"));
  }
  auto ca = make_ca("shoal cluster CA", now_unix_s - 60,
                    days_from(now_unix_s, std::max<uint32_t>(days, kCaValidityDays)));
  if (!ca.ok()) return ca.status();
  SHOAL_RETURN_IF_ERROR(write_pair(dir, "ca", *ca));
  for (const auto& name : node_names) {
    auto node = issue_node(*ca, name, {}, days, now_unix_s);
    if (!node.ok()) return node.status();
    SHOAL_RETURN_IF_ERROR(write_pair(dir, name, *node));
  }
  return {};
}

Status issue_into_cert_dir(const std::string& dir, const std::string& node_name,
                           const std::vector<std::string>& names, uint32_t days,
                           int64_t now_unix_s) {
  SHOAL_RETURN_IF_ERROR(check_days(days));
  if (!is_valid_cert_name(node_name) || node_name == "ca") {
    return Status::invalid_argument(
        "node name '" + node_name +
        "': use letters, digits, '.', '-' or '_' (at most 64, not 'ca')");
  }
  SHOAL_RETURN_IF_ERROR(require_absent(dir + "/" + node_name + ".key"));
  SHOAL_RETURN_IF_ERROR(require_absent(dir + "/" + node_name + ".crt"));
  auto ca_cert = read_pem_file(dir + "/ca.crt", "CA certificate", false);
  if (!ca_cert.ok()) return ca_cert.status();
  auto ca_key = read_pem_file(dir + "/ca.key", "CA key", true);
  if (!ca_key.ok()) return ca_key.status();
  auto node = issue_node(PemPair{*ca_cert, *ca_key}, node_name, names, days, now_unix_s);
  if (!node.ok()) return node.status();
  return write_pair(dir, node_name, *node);
}

}  // namespace shoal::rpc
