using System.Security.Cryptography;
using Org.BouncyCastle.Crypto.Agreement;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Security;

namespace KestrelQuic.Tls;

/// <summary>One ephemeral (EC)DHE key share (RFC 8446 §4.2.8.2).</summary>
internal abstract class KeyExchange : IDisposable
{
    private static readonly SecureRandom s_random = new();

    protected KeyExchange(NamedGroup group) => Group = group;

    public NamedGroup Group { get; }

    /// <summary>The key_exchange bytes of our KeyShareEntry.</summary>
    public abstract byte[] PublicKey { get; }

    public static bool IsSupported(NamedGroup group) => group is NamedGroup.X25519 or NamedGroup.Secp256r1 or NamedGroup.Secp384r1;

    public static KeyExchange Create(NamedGroup group) => group switch
    {
        NamedGroup.X25519 => new X25519KeyExchange(),
        NamedGroup.Secp256r1 => new EcdhKeyExchange(group, ECCurve.NamedCurves.nistP256, 32),
        NamedGroup.Secp384r1 => new EcdhKeyExchange(group, ECCurve.NamedCurves.nistP384, 48),
        _ => throw new ArgumentOutOfRangeException(nameof(group)),
    };

    /// <summary>Computes the shared secret; null when the peer's share is invalid.</summary>
    public abstract byte[]? TryDeriveSharedSecret(ReadOnlySpan<byte> peerPublicKey);

    public virtual void Dispose()
    {
    }

    private sealed class X25519KeyExchange : KeyExchange
    {
        private readonly X25519PrivateKeyParameters _private;

        public X25519KeyExchange()
            : base(NamedGroup.X25519)
        {
            _private = new X25519PrivateKeyParameters(s_random);
            PublicKey = _private.GeneratePublicKey().GetEncoded();
        }

        public override byte[] PublicKey { get; }

        public override byte[]? TryDeriveSharedSecret(ReadOnlySpan<byte> peerPublicKey)
        {
            if (peerPublicKey.Length != X25519PublicKeyParameters.KeySize)
            {
                return null;
            }

            try
            {
                var agreement = new X25519Agreement();
                agreement.Init(_private);
                byte[] secret = new byte[agreement.AgreementSize];

                // Throws on an all-zero result (small-order point, RFC 8446 §7.4.2).
                agreement.CalculateAgreement(new X25519PublicKeyParameters(peerPublicKey.ToArray(), 0), secret, 0);
                return secret;
            }
            catch (InvalidOperationException)
            {
                return null;
            }
        }
    }

    private sealed class EcdhKeyExchange : KeyExchange
    {
        private readonly ECDiffieHellman _ecdh;
        private readonly ECCurve _curve;
        private readonly int _coordinateLength;

        public EcdhKeyExchange(NamedGroup group, ECCurve curve, int coordinateLength)
            : base(group)
        {
            _curve = curve;
            _coordinateLength = coordinateLength;
            _ecdh = ECDiffieHellman.Create(curve);
            ECParameters p = _ecdh.ExportParameters(false);

            // UncompressedPointRepresentation: 4 || X || Y (RFC 8446 §4.2.8.2).
            byte[] point = new byte[1 + 2 * coordinateLength];
            point[0] = 4;
            p.Q.X!.CopyTo(point, 1 + coordinateLength - p.Q.X!.Length);
            p.Q.Y!.CopyTo(point, 1 + 2 * coordinateLength - p.Q.Y!.Length);
            PublicKey = point;
        }

        public override byte[] PublicKey { get; }

        public override byte[]? TryDeriveSharedSecret(ReadOnlySpan<byte> peerPublicKey)
        {
            if (peerPublicKey.Length != 1 + 2 * _coordinateLength || peerPublicKey[0] != 4)
            {
                return null;
            }

            try
            {
                var parameters = new ECParameters
                {
                    Curve = _curve,
                    Q = new ECPoint
                    {
                        X = peerPublicKey.Slice(1, _coordinateLength).ToArray(),
                        Y = peerPublicKey.Slice(1 + _coordinateLength, _coordinateLength).ToArray(),
                    },
                };

                // ImportParameters validates that the point is on the curve.
                using ECDiffieHellman peer = ECDiffieHellman.Create(parameters);
                return _ecdh.DeriveRawSecretAgreement(peer.PublicKey);
            }
            catch (CryptographicException)
            {
                return null;
            }
        }

        public override void Dispose() => _ecdh.Dispose();
    }
}
