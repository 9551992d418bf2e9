using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace KestrelQuic.Tests.Shared;

/// <summary>
/// Lists the public API of an assembly (exported types and their public/protected members, one line each, sorted)
/// and compares it with the checked-in test/Shared/api/&lt;Assembly&gt;.txt, so that API changes show up in review. Set
/// KESTRELQUIC_UPDATE_API=1 to rewrite the files instead of failing.
/// </summary>
internal static class PublicApiListing
{
    public const string UpdateVariable = "KESTRELQUIC_UPDATE_API";

    public static void AssertMatchesCheckedIn(Assembly assembly)
    {
        string actual = Describe(assembly);
        string path = Path.Combine(FindRepositoryRoot(), "test", "Shared", "api", assembly.GetName().Name + ".txt");
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, actual);
            return;
        }

        string expected = File.Exists(path) ? File.ReadAllText(path).ReplaceLineEndings("\n") : string.Empty;
        if (expected == actual) return;

        var expectedLines = new HashSet<string>(expected.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var actualLines = new HashSet<string>(actual.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var diff = new StringBuilder();
        foreach (string removed in expectedLines.Except(actualLines)) diff.Append("- ").AppendLine(removed);
        foreach (string added in actualLines.Except(expectedLines)) diff.Append("+ ").AppendLine(added);
        Assert.Fail($"The public API of {assembly.GetName().Name} differs from {path} (rerun with {UpdateVariable}=1 to accept):\n{diff}");
    }

    public static string Describe(Assembly assembly)
    {
        var lines = new List<string>();
        foreach (Type type in assembly.GetExportedTypes())
        {
            string typeName = FormatType(type);
            lines.Add($"{Kind(type)} {typeName}{BaseList(type)}");
            const BindingFlags Flags = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (MemberInfo m in type.GetMembers(Flags))
            {
                string? line = DescribeMember(m);
                if (line is not null) lines.Add($"{typeName}::{line}");
            }
        }

        lines.Sort(StringComparer.Ordinal);
        return string.Join("\n", lines) + "\n";
    }

    private static string? DescribeMember(MemberInfo member)
    {
        switch (member)
        {
            case ConstructorInfo c when IsVisible(c):
                return $"{Access(c)}{(c.IsStatic ? "static " : "")}.ctor({Parameters(c.GetParameters())})";
            case MethodInfo m when IsVisible(m) && !m.IsSpecialName:
                string generic = m.IsGenericMethodDefinition ? "<" + string.Join(", ", m.GetGenericArguments().Select(a => a.Name)) + ">" : "";
                return $"{Access(m)}{Modifiers(m)}{FormatType(m.ReturnType)} {m.Name}{generic}({Parameters(m.GetParameters())})";
            case MethodInfo m when IsVisible(m) && m.Name.StartsWith("op_", StringComparison.Ordinal):
                return $"{Access(m)}static {FormatType(m.ReturnType)} {m.Name}({Parameters(m.GetParameters())})";
            case PropertyInfo p:
                MethodInfo? get = p.GetMethod is { } g && IsVisible(g) ? g : null;
                MethodInfo? set = p.SetMethod is { } s && IsVisible(s) ? s : null;
                if (get is null && set is null) return null;
                string accessors = (get is not null ? "get; " : "") + (set is not null ? (IsInitOnly(set) ? "init; " : "set; ") : "");
                string indexer = p.GetIndexParameters() is { Length: > 0 } ip ? "[" + Parameters(ip) + "]" : "";
                return $"{Access((get ?? set)!)}{Modifiers((get ?? set)!)}{FormatType(p.PropertyType)} {p.Name}{indexer} {{ {accessors}}}";
            case FieldInfo f when f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly:
                if (f.IsSpecialName) return null; // enum value__
                string value = f.IsLiteral ? " = " + Convert.ToString(f.GetRawConstantValue(), System.Globalization.CultureInfo.InvariantCulture) : "";
                return $"{(f.IsPublic ? "public " : "protected ")}{(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{(f.IsInitOnly ? "readonly " : "")}{FormatType(f.FieldType)} {f.Name}{value}";
            case EventInfo e when e.AddMethod is { } add && IsVisible(add):
                return $"{Access(add)}{Modifiers(add)}event {FormatType(e.EventHandlerType!)} {e.Name}";
            case Type:
                return null; // nested public types are listed on their own
            default:
                return null;
        }
    }

    private static bool IsVisible(MethodBase m) => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly;

    private static string Access(MethodBase m) => m.IsPublic ? "public " : "protected ";

    private static string Modifiers(MethodInfo m)
    {
        if (m.IsStatic) return "static ";
        if (m.IsAbstract && !m.DeclaringType!.IsInterface) return "abstract ";
        if (m.IsVirtual && !m.IsFinal && !m.DeclaringType!.IsInterface) return m.GetBaseDefinition() != m ? "override " : "virtual ";
        return "";
    }

    private static bool IsInitOnly(MethodInfo setter)
        => setter.ReturnParameter.GetRequiredCustomModifiers().Any(t => t == typeof(IsExternalInit));

    private static string Parameters(ParameterInfo[] parameters) => string.Join(", ", parameters.Select(p =>
    {
        string prefix = p.IsOut ? "out " : p.ParameterType.IsByRef ? (p.IsIn ? "in " : "ref ") : p.GetCustomAttribute<ParamArrayAttribute>() is not null ? "params " : "";
        string defaultValue = p.HasDefaultValue ? " = " + (p.DefaultValue is null ? "null" : Convert.ToString(p.DefaultValue, System.Globalization.CultureInfo.InvariantCulture)) : "";
        return $"{prefix}{FormatType(p.ParameterType)} {p.Name}{defaultValue}";
    }));

    private static string Kind(Type t)
    {
        if (t.IsEnum) return "enum";
        if (t.IsInterface) return "interface";
        if (t.IsValueType) return (t.GetCustomAttribute<IsReadOnlyAttribute>() is not null ? "readonly " : "") + "struct";
        if (typeof(Delegate).IsAssignableFrom(t)) return "delegate";
        string modifiers = t.IsAbstract && t.IsSealed ? "static " : t.IsAbstract ? "abstract " : t.IsSealed ? "sealed " : "";
        return modifiers + "class";
    }

    private static string BaseList(Type t)
    {
        var bases = new List<string>();
        if (t.IsEnum) bases.Add(FormatType(Enum.GetUnderlyingType(t)));
        else if (t.BaseType is { } b && b != typeof(object) && b != typeof(ValueType)) bases.Add(FormatType(b));
        bases.AddRange(t.GetInterfaces().Select(FormatType).Order(StringComparer.Ordinal));
        return bases.Count == 0 ? "" : " : " + string.Join(", ", bases);
    }

    private static string FormatType(Type t)
    {
        if (t.IsByRef) return FormatType(t.GetElementType()!);
        if (t.IsArray) return FormatType(t.GetElementType()!) + "[" + new string(',', t.GetArrayRank() - 1) + "]";
        if (t.IsPointer) return FormatType(t.GetElementType()!) + "*";
        if (t.IsGenericParameter) return t.Name;
        if (Nullable.GetUnderlyingType(t) is { } underlying) return FormatType(underlying) + "?";
        string name = t.IsNested ? FormatType(t.DeclaringType!) + "." + t.Name : (t.Namespace is null ? "" : t.Namespace + ".") + t.Name;
        if (!t.IsGenericType) return name;
        int tick = name.LastIndexOf('`');
        if (tick >= 0) name = name[..tick];
        Type[] args = t.GetGenericArguments();
        if (t.IsNested && t.DeclaringType!.IsGenericType) args = args.Skip(t.DeclaringType.GetGenericArguments().Length).ToArray();
        return args.Length == 0 ? name : name + "<" + string.Join(", ", args.Select(FormatType)) + ">";
    }

    private static string FindRepositoryRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "KestrelQuic.sln"))) return d.FullName;
        }

        throw new InvalidOperationException("KestrelQuic.sln not found above " + AppContext.BaseDirectory);
    }
}
