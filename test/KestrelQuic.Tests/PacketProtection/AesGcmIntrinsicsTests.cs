using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;

namespace KestrelQuic.Tests.PacketProtection;

/// <summary>
/// The AES-NI/PCLMULQDQ AES-GCM against the GCM specification's test cases and, for thousands of random keys,
/// nonces, lengths and associated data, against the platform's <see cref="AesGcm"/> byte for byte.
/// </summary>
public sealed class AesGcmIntrinsicsTests
{
    [Fact]
    public void ProcessorSupport_IsUsedByPacketAead()
    {
        // The development and CI machines are x86-64 with AES-NI and PCLMULQDQ: the fast path must be the one tested.
        Assert.True(AesGcmIntrinsics.IsSupported);
        using PacketAead aead = PacketAead.Create(CipherSuite.Aes128GcmSha256, new byte[16], new byte[12]);
        Assert.True(aead.UsesIntrinsics);
        using PacketAead platform = PacketAead.Create(CipherSuite.Aes128GcmSha256, new byte[16], new byte[12], allowIntrinsics: false);
        Assert.False(platform.UsesIntrinsics);
    }

    // McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 1-4 (AES-128) and 13-16 (AES-256).
    [Theory]
    [InlineData("00000000000000000000000000000000", "000000000000000000000000", "", "", "", "58e2fccefa7e3061367f1d57a4e7455a")]
    [InlineData("00000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf")]
    [InlineData(
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        "4d5c2af327cd64a62cf35abd2ba6fab4")]
    [InlineData(
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        "5bc94fbc3221a5db94fae95ae7121a47")]
    [InlineData("0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b")]
    [InlineData("0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919")]
    public void SpecificationTestCases(string key, string nonce, string plaintext, string aad, string ciphertext, string tag)
    {
        var gcm = new AesGcmIntrinsics(Convert.FromHexString(key));
        byte[] p = Convert.FromHexString(plaintext);
        byte[] c = new byte[p.Length];
        byte[] t = new byte[16];
        gcm.Encrypt(Convert.FromHexString(nonce), p, c, t, Convert.FromHexString(aad));
        Assert.Equal(ciphertext, Convert.ToHexStringLower(c));
        Assert.Equal(tag, Convert.ToHexStringLower(t));

        byte[] back = new byte[c.Length];
        Assert.True(gcm.TryDecrypt(Convert.FromHexString(nonce), c, t, back, Convert.FromHexString(aad)));
        Assert.Equal(p, back);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    public void RandomInputs_MatchThePlatformAesGcm_InPlaceAndNot(int keyLength)
    {
        var random = new Random(9001 + keyLength);
        for (int i = 0; i < 3000; i++)
        {
            byte[] key = Bytes(random, keyLength);
            byte[] nonce = Bytes(random, 12);
            // Every length around the block and four-block boundaries, then packet-sized ones.
            int length = i < 600 ? i % 200 : random.Next(0, 1500);
            byte[] plaintext = Bytes(random, length);
            byte[] aad = Bytes(random, random.Next(0, 70));

            using var platform = new AesGcm(key, 16);
            byte[] expected = new byte[length];
            byte[] expectedTag = new byte[16];
            platform.Encrypt(nonce, plaintext, expected, expectedTag, aad);

            var gcm = new AesGcmIntrinsics(key);
            byte[] actual = new byte[length];
            byte[] tag = new byte[16];
            gcm.Encrypt(nonce, plaintext, actual, tag, aad);
            Assert.Equal(expected, actual);
            Assert.Equal(expectedTag, tag);

            byte[] inPlace = (byte[])plaintext.Clone();
            gcm.Encrypt(nonce, inPlace, inPlace, tag, aad);
            Assert.Equal(expected, inPlace);

            Assert.True(gcm.TryDecrypt(nonce, inPlace, tag, inPlace, aad));
            Assert.Equal(plaintext, inPlace);
        }
    }

    [Fact]
    public void AnyAlteredByte_FailsAuthentication_AndLeavesTheBufferUntouched()
    {
        var random = new Random(42);
        byte[] key = Bytes(random, 16);
        byte[] nonce = Bytes(random, 12);
        byte[] aad = Bytes(random, 21);
        byte[] plaintext = Bytes(random, 100);
        var gcm = new AesGcmIntrinsics(key);
        byte[] ciphertext = new byte[plaintext.Length];
        byte[] tag = new byte[16];
        gcm.Encrypt(nonce, plaintext, ciphertext, tag, aad);

        for (int i = 0; i < ciphertext.Length + tag.Length + aad.Length + nonce.Length; i++)
        {
            byte[] c = (byte[])ciphertext.Clone();
            byte[] t = (byte[])tag.Clone();
            byte[] a = (byte[])aad.Clone();
            byte[] n = (byte[])nonce.Clone();
            int j = i;
            if (j < c.Length) c[j] ^= 1;
            else if ((j -= c.Length) < t.Length) t[j] ^= 0x80;
            else if ((j -= t.Length) < a.Length) a[j] ^= 4;
            else n[j - a.Length] ^= 2;
            byte[] before = (byte[])c.Clone();
            Assert.False(gcm.TryDecrypt(n, c, t, c, a));
            Assert.Equal(before, c);
        }
    }

    [Fact]
    public void PacketAead_IntrinsicAndPlatform_ProduceTheSamePackets()
    {
        var random = new Random(7);
        foreach (CipherSuite suite in new[] { CipherSuite.Aes128GcmSha256, CipherSuite.Aes256GcmSha384 })
        {
            byte[] key = Bytes(random, CipherSuiteInfo.KeyLength(suite));
            byte[] iv = Bytes(random, 12);
            using PacketAead fast = PacketAead.Create(suite, key, iv);
            using PacketAead platform = PacketAead.Create(suite, key, iv, allowIntrinsics: false);
            for (long pn = 0; pn < 200; pn += 7)
            {
                byte[] header = Bytes(random, 20);
                byte[] payload = Bytes(random, random.Next(1, 1400));
                byte[] a = (byte[])payload.Clone();
                byte[] b = (byte[])payload.Clone();
                byte[] tagA = new byte[16];
                byte[] tagB = new byte[16];
                fast.Seal(pn, header, a, tagA);
                platform.Seal(pn, header, b, tagB);
                Assert.Equal(b, a);
                Assert.Equal(tagB, tagA);
                Assert.True(platform.TryOpen(pn, header, a, tagA));
                Assert.True(fast.TryOpen(pn, header, b, tagB));
                Assert.Equal(payload, a);
                Assert.Equal(payload, b);
            }

            byte[] forged = Bytes(random, 50);
            Assert.False(fast.TryOpen(1, new byte[5], forged, new byte[16]));
            Assert.Equal(1, fast.FailedDecryptions);
        }
    }

    private static byte[] Bytes(Random random, int length)
    {
        byte[] b = new byte[length];
        random.NextBytes(b);
        return b;
    }
}
